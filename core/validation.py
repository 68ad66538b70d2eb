"""Template validation: every problem at once, each with a JSON pointer and a sentence a partner can act on.

`validate_template(document)` never raises on bad input; it returns `Problem`s. A document with no
problems can be parsed (`core.template.parse_template`) and compiled (`compile_template`) safely.

This module keeps the template-level rules (top-level keys, settings, trigger, step shapes and keys,
branch targets, placeholders, the step graph); each step type's own rules (its config keys, from its
JSON Schema, and `validate`) are in its module under `core/steps/`, found through the registry.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Iterable, Mapping
from typing import Any

from core.expressions import check_placeholder, placeholders_in
from core.machine import flatten, is_machine, validate_machine, visualize_machine
from core.problems import Problem, Problems
from core.steps import kind_of
from core.steps.action import KNOWN_ACTIONS
from core.template import TargetError, parse_target, parse_trigger_type, step_key
from core.types import StepType, TriggerType

__all__ = ["KNOWN_ACTIONS", "Problem", "secrets_sent_elsewhere", "validate_template", "visualize"]

CONDITION_OPS = frozenset({"eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "contains", "exists",
                           "starts_with"})
TOP_LEVEL_KEYS = frozenset({"name", "description", "trigger_type", "trigger_config", "steps", "status",
                            "metadata", "settings", "states", "transitions"})
SETTINGS = {"separation_of_duties": bool}  # core/template.py Template.settings: what each one means
STEP_KEYS = frozenset({"type", "name", "id", "config", "description"})
# `callback` (url, token) is filled in by the external handler in async mode.
PLACEHOLDER_ROOTS = frozenset({"trigger", "steps", "instance", "secrets", "tenant", "payos", "callback"})
CRON = re.compile(r"^\s*(\S+\s+){4,5}\S+\s*$")  # five fields, or six with seconds last (croniter)
MAX_STEPS = 100


def validate_template(document: Any, *, known_actions: Iterable[str] = KNOWN_ACTIONS,
                      known_secrets: Iterable[str] | None = None) -> list[Problem]:
    """Check a template document; `known_secrets=None` skips the secrets check (not yet configured)."""
    problems = Problems()
    if not isinstance(document, Mapping):
        problems.add("", "a template must be a JSON object")
        return problems.items
    problems.unknown_keys("", document, TOP_LEVEL_KEYS)
    _check_settings(problems, document.get("settings"))
    name = document.get("name")
    if not isinstance(name, str) or not name.strip():
        problems.add("/name", "name is required and must be a non-empty string")
    elif len(name) > 200:
        problems.add("/name", "name must be at most 200 characters")
    trigger_type = parse_trigger_type(document.get("trigger_type", "manual"))
    if trigger_type is None:
        problems.add("/trigger_type", f"trigger_type {document.get('trigger_type')!r} is not one of on_transfer, "
                                      "event, manual, scheduled, threshold")
    else:
        _check_trigger(problems, trigger_type, document.get("trigger_config"))
    if is_machine(document):
        _check_machine(problems, document, set(known_actions),
                       set(known_secrets) if known_secrets is not None else None)
        return problems.items
    steps = document.get("steps")
    if not isinstance(steps, list) or not steps:
        problems.add("/steps", "steps must be a non-empty list")
        return problems.items
    if len(steps) > MAX_STEPS:
        problems.add("/steps", f"a template can have at most {MAX_STEPS} steps")
        return problems.items
    names = _check_step_shapes(problems, steps)
    secrets = set(known_secrets) if known_secrets is not None else None
    actions = set(known_actions)
    for i, step in enumerate(steps, start=1):
        if isinstance(step, Mapping) and _step_type(step) is not None:
            _check_step(problems, f"/steps/{i - 1}", i, step, names, len(steps), actions, secrets)
    if not any(p.pointer.startswith("/steps/") for p in problems.items):
        _check_graph(problems, steps, names)
    return problems.items


def _check_machine(problems: Problems, document: Mapping[str, Any], actions: set[str],
                   secrets: set[str] | None) -> None:
    """A state-machine template (core/machine.py): its structure there, each action by the step rules here."""
    anywhere = 10**6  # actions run in any order along the states: no "has not run yet" check, no numbering

    def check_step(pointer: str, step: Any) -> None:
        local = Problems()
        names = _check_step_shapes(local, [step])
        if isinstance(step, Mapping) and _step_type(step) is not None and not local.items:
            _check_step(local, "/steps/0", anywhere, step, {**all_names, **names}, anywhere, actions, secrets)
        for problem in local.items:
            problems.add(pointer + problem.pointer[len("/steps/0"):], problem.message)

    all_names: dict[str, int] = {}
    if isinstance(document.get("states"), list) and isinstance(document.get("transitions", []), list):
        try:
            flat, _ = flatten(document)
            for step in flat:
                if isinstance(step, Mapping) and isinstance(step.get("name"), str):
                    all_names.setdefault(step["name"], 0)
                    all_names.setdefault(step_key(step), 0)
        except (KeyError, TypeError, ValueError, AttributeError):
            pass  # the structure's own problems are reported below
    if len(all_names) > 2 * MAX_STEPS:
        problems.add("/states", f"a template can have at most {MAX_STEPS} actions")
    validate_machine(problems, document, check_step)


def _check_settings(problems: Problems, settings: Any) -> None:
    if settings is None:
        return
    if not isinstance(settings, Mapping):
        problems.add("/settings", "settings must be an object, e.g. {\"separation_of_duties\": true}")
        return
    for key, value in settings.items():
        kind = SETTINGS.get(key)
        if kind is None:
            problems.add(f"/settings/{key}", f"unknown setting {key!r}; settings are: {', '.join(SETTINGS)}")
        elif not isinstance(value, kind):
            problems.add(f"/settings/{key}", f"{key} must be true or false")


def _step_type(step: Mapping[str, Any]) -> StepType | None:
    try:
        return StepType(step.get("type"))
    except ValueError:
        return None


def _check_trigger(problems: Problems, trigger_type: TriggerType, config: Any) -> None:
    if config is None:
        config = {}
    if not isinstance(config, Mapping):
        problems.add("/trigger_config", "trigger_config must be an object")
        return
    conditions = config.get("conditions", [])
    if not isinstance(conditions, list):
        problems.add("/trigger_config/conditions", "conditions must be a list of {field, op, value}")
        conditions = []
    for i, cond in enumerate(conditions):
        _check_condition(problems, f"/trigger_config/conditions/{i}", cond)
    if trigger_type is TriggerType.SCHEDULED:
        cron = config.get("cron")
        if not isinstance(cron, str) or not CRON.match(cron):
            problems.add("/trigger_config/cron",
                         "a scheduled trigger needs cron: five fields such as '0 9 * * 1-5' (a sixth, seconds, "
                         "may follow)")
    if trigger_type is TriggerType.THRESHOLD:
        threshold = {k: config.get(k) for k in ("field", "op", "value")}
        if any(v is None for v in threshold.values()):
            problems.add("/trigger_config", "a threshold trigger needs field, op and value, e.g. "
                                            "{'field': 'amount', 'op': 'gte', 'value': 10000}")
        else:
            _check_condition(problems, "/trigger_config", threshold)
            if not isinstance(threshold["value"], int | float) or isinstance(threshold["value"], bool):
                problems.add("/trigger_config/value", "a threshold value must be a number")
    topic = config.get("topic")
    if topic is not None and (not isinstance(topic, str) or not re.fullmatch(r"[A-Za-z0-9._\-]{1,249}", topic)):
        problems.add("/trigger_config/topic", "topic must be a Kafka topic name")


def _check_condition(problems: Problems, pointer: str, cond: Any) -> None:
    if not isinstance(cond, Mapping):
        problems.add(pointer, "a condition must be an object {field, op, value}")
        return
    if not isinstance(cond.get("field"), str) or not cond.get("field"):
        problems.add(f"{pointer}/field", "field must be a dotted path such as metadata.type")
    op = cond.get("op")
    if op not in CONDITION_OPS:
        problems.add(f"{pointer}/op", f"op {op!r} is not one of {', '.join(sorted(CONDITION_OPS))}")
    elif op != "exists" and "value" not in cond:
        problems.add(f"{pointer}/value", f"op {op!r} needs a value")
    elif op in ("in", "not_in") and not isinstance(cond.get("value"), list):
        problems.add(f"{pointer}/value", f"op {op!r} needs a list value")


def _check_step_shapes(problems: Problems, steps: list[Any]) -> dict[str, int]:
    names: dict[str, int] = {}
    keys: dict[str, int] = {}
    for i, step in enumerate(steps, start=1):
        pointer = f"/steps/{i - 1}"
        if not isinstance(step, Mapping):
            problems.add(pointer, "a step must be an object {type, name, config}")
            continue
        problems.unknown_keys(pointer, step, STEP_KEYS, lead="a step has")
        if _step_type(step) is None:
            problems.add(f"{pointer}/type", f"unknown step type {step.get('type')!r}; use one of "
                                            f"{', '.join(t.value for t in StepType)}")
        name = step.get("name")
        if not isinstance(name, str) or not name.strip():
            problems.add(f"{pointer}/name", "every step needs a non-empty name")
            continue
        if name in names:
            problems.add(f"{pointer}/name", f"step name {name!r} is already used by step {names[name]}")
        names.setdefault(name, i)
        key = step_key(step)
        if keyword.iskeyword(key) or keyword.issoftkeyword(key):
            problems.add(f"{pointer}/id", f"step key {key!r} is a reserved word, so expressions could not read "
                                          f"steps.{key}.<field>; set another id")
        if key in keys and keys[key] != names.get(name):
            problems.add(f"{pointer}/id", f"step key {key!r} is already used by step {keys[key]}; set a distinct id")
        keys.setdefault(key, i)
        if "config" in step and not isinstance(step["config"], Mapping):
            problems.add(f"{pointer}/config", "config must be an object")
    return {**keys, **names}


def _check_step(problems: Problems, pointer: str, number: int, step: Mapping[str, Any], names: dict[str, int],
                count: int, actions: set[str], secrets: set[str] | None) -> None:
    step_type = StepType(step["type"])
    config = step.get("config") or {}
    if not isinstance(config, Mapping):
        return
    cp = f"{pointer}/config"
    kind = kind_of(step_type)
    allowed = kind.config_keys
    for key in config:
        if key not in allowed:
            problems.add(f"{cp}/{key}", f"unknown {step_type.value} config field {key!r}; "
                                        f"allowed: {', '.join(sorted(allowed))}")
    for key, default in kind.targets.items():
        try:
            parse_target(config.get(key, default), current=number, names=names, step_count=count)
        except TargetError as exc:
            problems.add(f"{cp}/{key}", f"{key} {exc}")
    kind.validate(problems, cp, config, actions)
    for suffix, path in placeholders_in(dict(config)):
        reason = check_placeholder(path)
        root = path.split(".")[0]
        if reason:
            problems.add(f"{cp}{suffix}", reason)
        elif root not in PLACEHOLDER_ROOTS:
            problems.add(f"{cp}{suffix}", f"'{{{{{path}}}}}' starts with {root!r}; placeholders start with "
                                          f"{', '.join(sorted(PLACEHOLDER_ROOTS))}")
        elif root == "secrets" and secrets is not None and path.split(".", 1)[-1] not in secrets:
            problems.add(f"{cp}{suffix}", f"secret {path.split('.', 1)[-1]!r} is not configured for this template; "
                                          "add it with POST /v1/workflows/templates/{id}/secrets")
        elif root == "steps":
            parts = path.split(".")
            if len(parts) < 2 or parts[1] not in names:
                problems.add(f"{cp}{suffix}", f"'{{{{{path}}}}}' names no step")
            elif names[parts[1]] >= number:
                problems.add(f"{cp}{suffix}", f"'{{{{{path}}}}}' reads step {names[parts[1]]}, which has not run "
                                              f"before step {number}")


# ------------------------------------------------------------------------------------------ the step graph

END = 0


def edges(steps: list[Mapping[str, Any]], names: dict[str, int]) -> dict[int, list[int]]:
    """Step number -> the steps it can go to next by design (0 = the instance ends).

    A failure can end any step, but it is no way out of a loop: only branches count as exits.
    """
    count = len(steps)
    graph: dict[int, list[int]] = {}
    for number, step in enumerate(steps, start=1):
        kind = kind_of(step["type"])
        config = step.get("config") or {}
        targets: list[int] = []
        outs = ["continue"] if kind.falls_through else []
        outs += [config.get(key, default) for key, default in kind.targets.items()]
        for raw in outs:
            target = parse_target(raw, current=number, names=names, step_count=count)
            targets.append(target.step if target.kind == "goto" else END)
        graph[number] = sorted(set(targets))
    return graph


def _check_graph(problems: Problems, steps: list[Any], names: dict[str, int]) -> None:
    graph = edges(steps, names)
    reachable = {1}
    frontier = [1]
    while frontier:
        node = frontier.pop()
        for nxt in graph.get(node, []):
            if nxt != END and nxt not in reachable:
                reachable.add(nxt)
                frontier.append(nxt)
    for number in graph:
        if number not in reachable:
            problems.add(f"/steps/{number - 1}", f"step {number} ({steps[number - 1]['name']}) can never be reached")
    reverse: dict[int, set[int]] = {}
    for node, targets in graph.items():
        for t in targets:
            reverse.setdefault(t, set()).add(node)
    can_end = {END}
    frontier = [END]
    while frontier:
        node = frontier.pop()
        for prev in reverse.get(node, ()):
            if prev not in can_end:
                can_end.add(prev)
                frontier.append(prev)
    trapped = sorted(n for n in reachable if n not in can_end)
    if trapped:
        problems.add(f"/steps/{trapped[0] - 1}", f"steps {', '.join(map(str, trapped))} form a cycle with no exit: "
                                                 "give one of its conditions a branch that leaves it")


def visualize(document: Mapping[str, Any]) -> dict[str, Any]:
    """The PRD's `visualize()`: an adjacency list by step number and a Mermaid flowchart of a valid template
    (a state-machine template: adjacency by state and a Mermaid stateDiagram-v2)."""
    if is_machine(document):
        return visualize_machine(document)
    steps = document["steps"]
    names = _check_step_shapes(Problems(), steps)
    graph = edges(steps, names)
    lines = ["flowchart TD", "  start((start)) --> s1"]
    for number, step in enumerate(steps, start=1):
        label = str(step["name"]).replace('"', "'")
        shape = ('{"' + label + '"}') if step["type"] == "condition" else ('["' + label + '"]')
        lines.append(f"  s{number}{shape}")
        config = step.get("config") or {}
        if step["type"] == "condition":
            for key, label_text in (("if_true", "true"), ("if_false", "false")):
                target = parse_target(config.get(key, "continue"), current=number, names=names, step_count=len(steps))
                dest = f"s{target.step}" if target.kind == "goto" else ("done((done))" if target.kind == "complete"
                                                                         else "failed((failed))")
                lines.append(f"  s{number} -- {label_text} --> {dest}")
        else:
            dest = f"s{number + 1}" if number < len(steps) else "done((done))"
            lines.append(f"  s{number} --> {dest}")
            if step["type"] == "approval":
                target = parse_target(config.get("on_reject", "fail"), current=number, names=names,
                                      step_count=len(steps))
                dest = f"s{target.step}" if target.kind == "goto" else (
                    "done((done))" if target.kind == "complete" else "failed((failed))")
                lines.append(f"  s{number} -. rejected .-> {dest}")
    adjacency = {str(n): ["end" if t == END else t for t in targets] for n, targets in graph.items()}
    return {"adjacency": adjacency, "mermaid": "\n".join(lines)}


# ------------------------------------------------------------------------------------- where secrets go

def _destination(step: Mapping[str, Any]) -> str:
    """Where a step sends what it renders: its URL's scheme, host and port (a placeholder URL as written)."""
    config = step.get("config") if isinstance(step.get("config"), Mapping) else {}
    params = config.get("params") if isinstance(config.get("params"), Mapping) else {}
    url = config.get("url") or params.get("url") or config.get("channel") or config.get("type") or ""
    text = str(url).strip()
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*://[^/?#]*)", text)
    return (match.group(1) if match else text).lower()


def secret_destinations(document: Any) -> dict[str, frozenset[str]]:
    """Each `{{secrets.NAME}}` the document uses -> the destinations of the steps that use it."""
    found: dict[str, set[str]] = {}
    steps = document.get("steps") if isinstance(document, Mapping) else None
    for step in steps if isinstance(steps, list) else []:
        if not isinstance(step, Mapping):
            continue
        for _, path in placeholders_in(step.get("config")):
            if path.startswith("secrets.") and len(path) > len("secrets."):
                found.setdefault(path.split(".", 1)[1], set()).add(_destination(step))
    return {name: frozenset(where) for name, where in found.items()}


def secrets_sent_elsewhere(old: Any, new: Any) -> list[str]:
    """Secrets the new version would send to a destination the old version did not send them to.

    A stored secret was given for the destinations the template had when it was set; a new version that
    points the same secret at another host (by editing a URL, or by referencing it from another step) must
    have the secret confirmed again (the gateway's `confirm_secrets`), or a template editor could redirect
    an ERP key to a server of their own without ever seeing it.
    """
    before = secret_destinations(old)
    return sorted(name for name, where in secret_destinations(new).items() if not where <= before.get(name, set()))
