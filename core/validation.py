"""Template validation: every problem at once, each with a JSON pointer and a sentence a partner can act on.

`validate_template(document)` never raises on bad input; it returns `Problem`s. A document with no
problems can be parsed (`core.template.parse_template`) and compiled (`compile_template`) safely.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from core.approvers import SPEC_TYPES, spec_list
from core.expressions import ExpressionError, check_placeholder, compile_expression, placeholders_in
from core.quorum import committee_members, parse_level
from core.retry import ON_FAILURE_CHOICES
from core.steps.wait import MIN_POLL_SECONDS
from core.template import DEFAULT_TARGETS, TARGET_KEYS, TargetError, parse_target, parse_trigger_type, step_key
from core.types import ApprovalLevel, StepType, TriggerType

KNOWN_ACTIONS = frozenset({"execute_transfer", "simulate_transfer", "lookup_transfer", "http_request"})
CONDITION_OPS = frozenset({"eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "contains", "exists",
                           "starts_with"})
TOP_LEVEL_KEYS = frozenset({"name", "description", "trigger_type", "trigger_config", "steps", "status",
                            "metadata", "settings"})
SETTINGS = {"separation_of_duties": bool}  # core/template.py Template.settings: what each one means
STEP_KEYS = frozenset({"type", "name", "id", "config", "description"})
# `callback` (url, token) is filled in by the external handler in async mode.
PLACEHOLDER_ROOTS = frozenset({"trigger", "steps", "instance", "secrets", "tenant", "payos", "callback"})
ON_TIMEOUT_CHOICES = ("fail", "auto_approve", "auto_reject", "escalate", "continue")
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD")
CRON = re.compile(r"^\s*(\S+\s+){4,5}\S+\s*$")  # five fields, or six with seconds last (croniter)
MAX_STEPS = 100
EVALUATION_FAILURE_CHOICES = ("fail_workflow", "skip")

STEP_CONFIG_KEYS: dict[StepType, frozenset[str]] = {
    StepType.CONDITION: frozenset({"expression", "if_true", "if_false", "on_failure"}),
    StepType.APPROVAL: frozenset({"approvers", "level", "quorum", "timeout_hours", "on_timeout", "escalate_to",
                                  "on_reject", "description"}),
    StepType.ACTION: frozenset({"action", "params", "retry_config", "on_failure", "failure_notification",
                                "timeout_seconds", "success_condition", "review_approvers",
                                "review_timeout_hours"}),
    StepType.WAIT: frozenset({"until", "duration_seconds", "duration_minutes", "duration_hours", "condition",
                              "poll_interval_seconds", "timeout_hours", "on_timeout", "on_failure"}),
    StepType.NOTIFICATION: frozenset({"channel", "type", "url", "headers", "body", "to", "subject", "text",
                                      "retry_config", "on_failure", "timeout_seconds", "secret_name",
                                      "review_approvers", "review_timeout_hours", "failure_notification"}),
    StepType.EXTERNAL: frozenset({"url", "method", "headers", "body", "query", "timeout_seconds", "retry_config",
                                  "success_condition", "extract_fields", "mode", "completion_timeout_hours",
                                  "on_failure", "failure_notification", "review_approvers",
                                  "review_timeout_hours"}),
}


@dataclass(frozen=True)
class Problem:
    pointer: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"pointer": self.pointer, "message": self.message}


class _Problems:
    def __init__(self) -> None:
        self.items: list[Problem] = []

    def add(self, pointer: str, message: str) -> None:
        self.items.append(Problem(pointer, message))


def validate_template(document: Any, *, known_actions: Iterable[str] = KNOWN_ACTIONS,
                      known_secrets: Iterable[str] | None = None) -> list[Problem]:
    """Check a template document; `known_secrets=None` skips the secrets check (not yet configured)."""
    problems = _Problems()
    if not isinstance(document, Mapping):
        problems.add("", "a template must be a JSON object")
        return problems.items
    for key in document:
        if key not in TOP_LEVEL_KEYS:
            problems.add(f"/{key}", f"unknown field {key!r}; allowed: {', '.join(sorted(TOP_LEVEL_KEYS))}")
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


def _check_settings(problems: _Problems, settings: Any) -> None:
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


def _check_trigger(problems: _Problems, trigger_type: TriggerType, config: Any) -> None:
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


def _check_condition(problems: _Problems, pointer: str, cond: Any) -> None:
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


def _check_step_shapes(problems: _Problems, steps: list[Any]) -> dict[str, int]:
    names: dict[str, int] = {}
    keys: dict[str, int] = {}
    for i, step in enumerate(steps, start=1):
        pointer = f"/steps/{i - 1}"
        if not isinstance(step, Mapping):
            problems.add(pointer, "a step must be an object {type, name, config}")
            continue
        for key in step:
            if key not in STEP_KEYS:
                problems.add(f"{pointer}/{key}", f"unknown field {key!r}; a step has {', '.join(sorted(STEP_KEYS))}")
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


def _check_step(problems: _Problems, pointer: str, number: int, step: Mapping[str, Any], names: dict[str, int],
                count: int, actions: set[str], secrets: set[str] | None) -> None:
    step_type = StepType(step["type"])
    config = step.get("config") or {}
    if not isinstance(config, Mapping):
        return
    cp = f"{pointer}/config"
    allowed = STEP_CONFIG_KEYS[step_type]
    for key in config:
        if key not in allowed:
            problems.add(f"{cp}/{key}", f"unknown {step_type.value} config field {key!r}; "
                                        f"allowed: {', '.join(sorted(allowed))}")
    for key in TARGET_KEYS.get(step_type, ()):
        try:
            parse_target(config.get(key, DEFAULT_TARGETS[key]), current=number, names=names, step_count=count)
        except TargetError as exc:
            problems.add(f"{cp}/{key}", f"{key} {exc}")
    checker = _STEP_CHECKS[step_type]
    checker(problems, cp, config, actions)
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


def _expression(problems: _Problems, pointer: str, source: Any, required: bool = True) -> None:
    if source is None and not required:
        return
    try:
        compile_expression(source)
    except ExpressionError as exc:
        problems.add(pointer, str(exc))


def _positive_number(problems: _Problems, pointer: str, value: Any, *, maximum: float | None = None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        problems.add(pointer, f"must be a positive number, got {value!r}")
    elif maximum is not None and value > maximum:
        problems.add(pointer, f"must be at most {maximum:g}, got {value!r}")


def _check_condition_step(problems: _Problems, cp: str, config: Mapping[str, Any], actions: set[str]) -> None:
    if "expression" not in config:
        problems.add(f"{cp}/expression", "a condition step needs an expression, e.g. 'trigger.amount <= 1000'")
    else:
        _expression(problems, f"{cp}/expression", config["expression"])
    _check_evaluation_failure(problems, cp, config)


def _check_evaluation_failure(problems: _Problems, cp: str, config: Mapping[str, Any]) -> None:
    """A condition or wait step whose expression fails to evaluate fails; `on_failure` says what then."""
    choice = config.get("on_failure")
    if choice is not None and choice not in EVALUATION_FAILURE_CHOICES:
        problems.add(f"{cp}/on_failure", f"a {'condition' if 'expression' in config else 'wait'} step's on_failure "
                                         f"is one of {', '.join(EVALUATION_FAILURE_CHOICES)}")


def _check_approvers(problems: _Problems, pointer: str, approvers: Any) -> None:
    specs = spec_list(approvers)
    if not specs or (isinstance(approvers, list) and len(specs) != len(approvers)):
        problems.add(pointer, "approvers must be {type: role|user|agent, value: ...} or a list of them")
        return
    for i, spec in enumerate(specs):
        p = f"{pointer}/{i}" if isinstance(approvers, list) else pointer
        if spec.get("type") not in SPEC_TYPES:
            problems.add(f"{p}/type", f"approver type {spec.get('type')!r} is not one of {', '.join(SPEC_TYPES)}")
        value = spec.get("value")
        if not value or not (isinstance(value, str) or (isinstance(value, list) and all(
                isinstance(v, str) and v for v in value))):
            problems.add(f"{p}/value", "approver value must be a non-empty id, role, or list of ids")


def _check_approval_step(problems: _Problems, cp: str, config: Mapping[str, Any], actions: set[str]) -> None:
    level = parse_level(config.get("level"))
    if level is None:
        problems.add(f"{cp}/level", f"level {config.get('level')!r} is not one of SINGLE, DUAL, COMMITTEE, AUTO")
    if level is not ApprovalLevel.AUTO:
        if "approvers" not in config:
            problems.add(f"{cp}/approvers", "an approval step needs approvers, e.g. {'type': 'role', 'value': 'cfo'}")
        else:
            _check_approvers(problems, f"{cp}/approvers", config["approvers"])
    if level is ApprovalLevel.COMMITTEE:
        quorum = config.get("quorum")
        members = committee_members(config.get("approvers"))
        if quorum is not None and (not isinstance(quorum, int) or isinstance(quorum, bool) or quorum < 1):
            problems.add(f"{cp}/quorum", "quorum must be a whole number of approvals, at least 1")
        elif isinstance(quorum, int) and members and quorum > members:
            problems.add(f"{cp}/quorum", f"quorum {quorum} is more than the {members} committee members")
    if level is ApprovalLevel.DUAL and 0 < committee_members(config.get("approvers")) < 2:
        problems.add(f"{cp}/approvers", "DUAL approval needs at least two possible approvers")
    _positive_number(problems, f"{cp}/timeout_hours", config.get("timeout_hours"), maximum=24 * 365)
    on_timeout = config.get("on_timeout")
    if on_timeout is not None:
        action = on_timeout.get("action", "escalate") if isinstance(on_timeout, Mapping) else on_timeout
        if action not in ON_TIMEOUT_CHOICES:
            problems.add(f"{cp}/on_timeout", f"on_timeout {action!r} is not one of {', '.join(ON_TIMEOUT_CHOICES)}")
        if "timeout_hours" not in config:
            problems.add(f"{cp}/on_timeout", "on_timeout needs timeout_hours to know when to act")
        if isinstance(on_timeout, Mapping):
            if "approvers" in on_timeout:
                _check_approvers(problems, f"{cp}/on_timeout/approvers", on_timeout["approvers"])
            _positive_number(problems, f"{cp}/on_timeout/timeout_hours", on_timeout.get("timeout_hours"))
            then = on_timeout.get("then", "fail")
            if then not in ("fail", "auto_approve", "auto_reject", "continue"):
                problems.add(f"{cp}/on_timeout/then",
                             f"then {then!r} is not fail, auto_approve, auto_reject or continue")
    if "escalate_to" in config:
        _check_approvers(problems, f"{cp}/escalate_to", config["escalate_to"])


def _check_failure_policy(problems: _Problems, cp: str, config: Mapping[str, Any]) -> None:
    retry = config.get("retry_config")
    if retry is not None:
        if not isinstance(retry, Mapping):
            problems.add(f"{cp}/retry_config", "retry_config must be {max_retries, backoff_ms}")
        else:
            max_retries = retry.get("max_retries", 0)
            if not isinstance(max_retries, int) or isinstance(max_retries, bool) or not 0 <= max_retries <= 20:
                problems.add(f"{cp}/retry_config/max_retries", "max_retries must be a whole number from 0 to 20")
            backoff = retry.get("backoff_ms", 1000)
            if not isinstance(backoff, int) or isinstance(backoff, bool) or not 1 <= backoff <= 86_400_000:
                problems.add(f"{cp}/retry_config/backoff_ms", "backoff_ms must be milliseconds from 1 to 86400000")
            for key in retry:
                if key not in ("max_retries", "backoff_ms", "max_backoff_ms"):
                    problems.add(f"{cp}/retry_config/{key}", f"unknown retry_config field {key!r}")
    choice = config.get("on_failure")
    if choice is not None and choice not in ON_FAILURE_CHOICES:
        problems.add(f"{cp}/on_failure", f"on_failure {choice!r} is not one of {', '.join(ON_FAILURE_CHOICES)}")
    if choice == "human_review" and "review_approvers" in config:
        _check_approvers(problems, f"{cp}/review_approvers", config["review_approvers"])
    notice = config.get("failure_notification")
    if notice is not None:
        if not isinstance(notice, Mapping):
            problems.add(f"{cp}/failure_notification", "failure_notification must be an object {type, url|to}")
        else:
            channel = notice.get("type", notice.get("channel", "webhook"))
            if channel == "webhook" and not notice.get("url"):
                problems.add(f"{cp}/failure_notification/url", "a webhook failure_notification needs a url")
            if channel == "email" and not notice.get("to"):
                problems.add(f"{cp}/failure_notification/to", "an email failure_notification needs to")
    _positive_number(problems, f"{cp}/timeout_seconds", config.get("timeout_seconds"), maximum=300)


def _check_action_step(problems: _Problems, cp: str, config: Mapping[str, Any], actions: set[str]) -> None:
    action = config.get("action")
    if action not in actions:
        problems.add(f"{cp}/action", f"unknown action {action!r}; available: {', '.join(sorted(actions))}")
    if "params" in config and not isinstance(config["params"], Mapping):
        problems.add(f"{cp}/params", "params must be an object")
    _expression(problems, f"{cp}/success_condition", config.get("success_condition"), required=False)
    _check_failure_policy(problems, cp, config)


def _check_wait_step(problems: _Problems, cp: str, config: Mapping[str, Any], actions: set[str]) -> None:
    modes = [k for k in ("until", "duration_seconds", "duration_minutes", "duration_hours", "condition")
             if k in config]
    if len(modes) != 1:
        problems.add(cp, "a wait step needs exactly one of until, duration_seconds, duration_minutes, "
                         f"duration_hours, condition (got {', '.join(modes) or 'none'})")
        return
    mode = modes[0]
    if mode == "condition":
        _expression(problems, f"{cp}/condition", config["condition"])
        poll = config.get("poll_interval_seconds")
        _positive_number(problems, f"{cp}/poll_interval_seconds", poll)
        if isinstance(poll, int | float) and not isinstance(poll, bool) and 0 < poll < MIN_POLL_SECONDS:
            problems.add(f"{cp}/poll_interval_seconds", f"poll_interval_seconds must be at least {MIN_POLL_SECONDS} "
                                                         "(a tighter poll re-evaluates for every tenant's cost)")
        _check_evaluation_failure(problems, cp, config)
    elif mode == "until":
        from core.steps.wait import parse_time_ms

        until = config["until"]
        if not (isinstance(until, str) and "{{" in until) and parse_time_ms(until) is None:
            problems.add(f"{cp}/until", "until must be an ISO 8601 time, epoch milliseconds, or a placeholder")
    else:
        _positive_number(problems, f"{cp}/{mode}", config[mode])
    _positive_number(problems, f"{cp}/timeout_hours", config.get("timeout_hours"))
    if config.get("on_timeout", "fail") not in ("fail", "continue"):
        problems.add(f"{cp}/on_timeout", "a wait's on_timeout is fail or continue")


def _check_notification_step(problems: _Problems, cp: str, config: Mapping[str, Any], actions: set[str]) -> None:
    channel = config.get("channel", config.get("type", "webhook"))
    if channel not in ("webhook", "email"):
        problems.add(f"{cp}/channel", f"channel {channel!r} is not webhook or email")
    elif channel == "webhook":
        url = config.get("url")
        if not isinstance(url, str) or not (url.startswith(("http://", "https://", "{{"))):
            problems.add(f"{cp}/url", "a webhook notification needs an http(s) url")
    elif channel == "email":
        to = config.get("to")
        if not to or not isinstance(to, str | list):
            problems.add(f"{cp}/to", "an email notification needs to (an address or a list)")
    _check_failure_policy(problems, cp, config)


def _check_external_step(problems: _Problems, cp: str, config: Mapping[str, Any], actions: set[str]) -> None:
    url = config.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://", "{{")):
        problems.add(f"{cp}/url", "an external step needs an http(s) url")
    method = str(config.get("method", "GET")).upper()
    if method not in HTTP_METHODS:
        problems.add(f"{cp}/method", f"method {config.get('method')!r} is not one of {', '.join(HTTP_METHODS)}")
    mode = config.get("mode", "sync")
    if mode not in ("sync", "async"):
        problems.add(f"{cp}/mode", f"mode {mode!r} is not sync or async")
    if "headers" in config and not isinstance(config["headers"], Mapping):
        problems.add(f"{cp}/headers", "headers must be an object of strings")
    _expression(problems, f"{cp}/success_condition", config.get("success_condition"), required=False)
    extract = config.get("extract_fields")
    if extract is not None:
        if not isinstance(extract, Mapping):
            problems.add(f"{cp}/extract_fields", "extract_fields must map output names to paths like response.body.x")
        else:
            for name, path in extract.items():
                if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(name)):
                    problems.add(f"{cp}/extract_fields/{name}", "field names are letters, digits and _")
                _expression(problems, f"{cp}/extract_fields/{name}", path)
    _positive_number(problems, f"{cp}/completion_timeout_hours", config.get("completion_timeout_hours"),
                     maximum=24 * 90)
    _check_failure_policy(problems, cp, config)


_STEP_CHECKS = {
    StepType.CONDITION: _check_condition_step,
    StepType.APPROVAL: _check_approval_step,
    StepType.ACTION: _check_action_step,
    StepType.WAIT: _check_wait_step,
    StepType.NOTIFICATION: _check_notification_step,
    StepType.EXTERNAL: _check_external_step,
}


# ------------------------------------------------------------------------------------------ the step graph

END = 0


def edges(steps: list[Mapping[str, Any]], names: dict[str, int]) -> dict[int, list[int]]:
    """Step number -> the steps it can go to next by design (0 = the instance ends).

    A failure can end any step, but it is no way out of a loop: only branches count as exits.
    """
    count = len(steps)
    graph: dict[int, list[int]] = {}
    for number, step in enumerate(steps, start=1):
        step_type = StepType(step["type"])
        config = step.get("config") or {}
        targets: list[int] = []
        keys = TARGET_KEYS.get(step_type, ())
        if step_type is StepType.CONDITION:
            outs = [config.get(k, DEFAULT_TARGETS[k]) for k in keys]
        else:
            outs = ["continue"] + [config.get(k, DEFAULT_TARGETS[k]) for k in keys]
        for raw in outs:
            target = parse_target(raw, current=number, names=names, step_count=count)
            targets.append(target.step if target.kind == "goto" else END)
        graph[number] = sorted(set(targets))
    return graph


def _check_graph(problems: _Problems, steps: list[Any], names: dict[str, int]) -> None:
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
    """The PRD's `visualize()`: an adjacency list by step number and a Mermaid flowchart of a valid template."""
    steps = document["steps"]
    names = _check_step_shapes(_Problems(), steps)
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
