"""State-machine templates: `states` + `transitions`, compiled onto the existing step machinery.

A state-machine document has no `steps`; it has `states` (name, `entry_actions`, `exit_actions` -- steps of
the six step types, run in order --, and `terminal` with the WorkflowStatus it ends in) and `transitions`
(from, to, optional `condition` expression, `automatic`, optional `action` step, optional
`requires_approval` with an approval step's config, optional `roles` that may request it, and optionally a
time: `after_seconds` / `after_minutes` / `after_hours` in the source state, or `at` a deadline -- an ISO 8601
time, epoch milliseconds or a placeholder such as `{{trigger.review_by}}`).

A transition with a time is automatic: entering its source state arms a durable timer (`TimerPurpose.
TRANSITION_DUE`), leaving the state drops it, and when it fires the transition falls due (`TransitionDue`, in
the audit trail) and is taken like any automatic one, its `condition` (if any) checked then. Why a timer and
not a condition on `now`: a condition is only evaluated when something happens to the instance, and a
deadline must fire by itself.

Why compile instead of a second engine: every action is flattened into one numbered step list (entry and
exit actions per state, then each transition's action and approval step), so quorum, escalation, retries,
timers, the pending list and the read model work unchanged. What is new is only the route: the
`TransitionTaken` event carries the step numbers to run (exit actions of the old state, the transition's
action, entry actions of the new one), and the engine loop (`core.decide`) runs that route instead of
`continue`. A step-list template has `machine=None` and behaves exactly as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from core.expressions import Expression, compile_expression
from core.timers import parse_time_ms
from core.types import WorkflowStatus

TERMINAL_CHOICES = ("COMPLETED", "FAILED", "CANCELLED")
STATE_KEYS = frozenset({"name", "description", "entry_actions", "exit_actions", "terminal"})
AFTER_UNITS_MS = {"after_seconds": 1000, "after_minutes": 60_000, "after_hours": 3_600_000}
TIME_KEYS = (*AFTER_UNITS_MS, "at")
TRANSITION_KEYS = frozenset({"from", "to", "condition", "automatic", "action", "requires_approval", "roles",
                             "description", *TIME_KEYS})


@dataclass(frozen=True)
class MachineState:
    name: str
    entry: tuple[int, ...]  # step numbers of the entry actions, in order
    exit: tuple[int, ...]
    terminal: WorkflowStatus | None = None


@dataclass(frozen=True)
class MachineTransition:
    index: int
    source: str
    target: str
    condition: str = ""
    automatic: bool = False
    action: int = 0  # step number of its action step, 0 for none
    approval: int = 0  # step number of its approval step, 0 when it needs no approval
    roles: tuple[str, ...] = ()
    after_ms: int = 0  # time-based: due this long after entering `source` ...
    at: Any = None  # ... or at this deadline (ISO 8601, epoch ms, or a placeholder rendered on entry)

    @property
    def label(self) -> str:
        return f"{self.source} -> {self.target}"

    @property
    def timed(self) -> bool:
        return bool(self.after_ms) or self.at is not None

    @property
    def timing(self) -> str:
        """The time part in words, for reasons in the audit trail."""
        if self.at is not None:
            return f"at {self.at}"
        for key, unit in AFTER_UNITS_MS.items():
            if self.after_ms % unit == 0 and (self.after_ms // unit < 60 or key == "after_hours"):
                return f"after {self.after_ms // unit:g} {key.removeprefix('after_')} in {self.source}"
        return f"after {self.after_ms} ms in {self.source}"


@dataclass(frozen=True)
class Machine:
    states: tuple[MachineState, ...]
    transitions: tuple[MachineTransition, ...]

    @property
    def initial(self) -> str:
        return self.states[0].name

    def state(self, name: str) -> MachineState:
        for s in self.states:
            if s.name == name:
                return s
        raise KeyError(name)

    def outgoing(self, name: str) -> tuple[MachineTransition, ...]:
        return tuple(t for t in self.transitions if t.source == name)


def is_machine(document: Any) -> bool:
    return isinstance(document, Mapping) and ("states" in document or "transitions" in document)


def flatten(doc: Mapping[str, Any]) -> tuple[list[dict[str, Any]], Machine]:
    """The step list and the machine of a valid state-machine document (numbered from 1)."""
    steps: list[dict[str, Any]] = []

    def add(raw: Mapping[str, Any]) -> int:
        steps.append(dict(raw))
        return len(steps)

    states = []
    for raw in doc.get("states", []):
        entry = tuple(add(a) for a in raw.get("entry_actions") or [])
        exit_ = tuple(add(a) for a in raw.get("exit_actions") or [])
        terminal = raw.get("terminal")
        status = WorkflowStatus(terminal) if isinstance(terminal, str) else (
            WorkflowStatus.COMPLETED if terminal is True else None)
        states.append(MachineState(name=str(raw["name"]), entry=entry, exit=exit_, terminal=status))
    transitions = []
    for i, raw in enumerate(doc.get("transitions", [])):
        action = add(raw["action"]) if isinstance(raw.get("action"), Mapping) else 0
        approval = 0
        if isinstance(raw.get("requires_approval"), Mapping):
            approval = add({"type": "approval", "name": f"approve {raw['from']} -> {raw['to']}",
                            "id": f"approve_{i + 1}", "config": dict(raw["requires_approval"])})
        after_ms = next((int(float(raw[k]) * unit) for k, unit in AFTER_UNITS_MS.items() if raw.get(k)), 0)
        at = raw.get("at")
        transitions.append(MachineTransition(
            index=i, source=str(raw["from"]), target=str(raw["to"]), condition=str(raw.get("condition") or ""),
            automatic=bool(raw.get("automatic", False)) or bool(after_ms) or at is not None, action=action,
            approval=approval, roles=tuple(raw.get("roles") or ()), after_ms=after_ms, at=at))
    return steps, Machine(states=tuple(states), transitions=tuple(transitions))


@dataclass(frozen=True)
class CompiledMachine:
    machine: Machine
    conditions: Mapping[int, Expression]  # transition index -> its compiled condition


def compile_machine(machine: Machine) -> CompiledMachine:
    return CompiledMachine(machine=machine, conditions={
        t.index: compile_expression(t.condition) for t in machine.transitions if t.condition})


def route(machine: Machine, transition: MachineTransition) -> tuple[int, ...]:
    """The steps a taken transition runs: exit actions of its source, its action, entry actions of its target."""
    return (*machine.state(transition.source).exit, *((transition.action,) if transition.action else ()),
            *machine.state(transition.target).entry)


# --------------------------------------------------------------------------------------------- validation

def validate_machine(problems: Any, doc: Mapping[str, Any], check_step: Any) -> None:
    """Every structural problem of `states` / `transitions` at once, each with its JSON pointer.

    `check_step(pointer, step)` validates one action as a step (the step-list rules, in core/validation.py).
    """
    states = doc.get("states")
    transitions = doc.get("transitions", [])
    if not isinstance(states, list) or not states:
        problems.add("/states", "states must be a non-empty list of {name, entry_actions, exit_actions, terminal}")
        return
    if not isinstance(transitions, list):
        problems.add("/transitions", "transitions must be a list of {from, to, condition, action, "
                                     "requires_approval}")
        transitions = []
    if "steps" in doc:
        problems.add("/steps", "a template has either steps or states/transitions, not both")
    names: dict[str, int] = {}
    terminal: set[str] = set()
    for i, state in enumerate(states):
        pointer = f"/states/{i}"
        if not isinstance(state, Mapping):
            problems.add(pointer, "a state must be an object with a name")
            continue
        problems.unknown_keys(pointer, state, STATE_KEYS)
        name = state.get("name")
        if not isinstance(name, str) or not name.strip():
            problems.add(f"{pointer}/name", "a state needs a non-empty name")
            continue
        if name in names:
            problems.add(f"{pointer}/name", f"duplicate state name {name!r} (first at /states/{names[name]})")
            continue
        names[name] = i
        term = state.get("terminal")
        if term is not None and term is not False:
            if term is True or term in TERMINAL_CHOICES:
                terminal.add(name)
            else:
                problems.add(f"{pointer}/terminal", f"terminal must be one of {', '.join(TERMINAL_CHOICES)} "
                                                    "(or true for COMPLETED)")
        for key in ("entry_actions", "exit_actions"):
            actions = state.get(key, [])
            if not isinstance(actions, list):
                problems.add(f"{pointer}/{key}", f"{key} must be a list of steps")
                continue
            for j, action in enumerate(actions):
                check_step(f"{pointer}/{key}/{j}", action)
    graph: dict[str, list[str]] = {n: [] for n in names}
    automatic: dict[str, list[tuple[int, str]]] = {}
    seen: dict[tuple[str, str], int] = {}
    for i, t in enumerate(transitions):
        pointer = f"/transitions/{i}"
        if not isinstance(t, Mapping):
            problems.add(pointer, "a transition must be an object with from and to")
            continue
        problems.unknown_keys(pointer, t, TRANSITION_KEYS)
        ends = []
        for key in ("from", "to"):
            value = t.get(key)
            if value not in names:
                problems.add(f"{pointer}/{key}", f"unknown state {value!r}; states are: {', '.join(names)}")
            ends.append(value)
        source, target = ends
        if (source, target) in seen and source in names and target in names:
            problems.add(pointer, f"duplicate transition {source} -> {target} (first at /transitions/"
                                  f"{seen[(source, target)]})")
        seen.setdefault((source, target), i)
        if source in terminal:
            problems.add(f"{pointer}/from", f"state {source!r} is terminal; a terminal state has no outgoing "
                                            "transitions")
        if source in names and target in names:
            graph[source].append(target)
        condition = t.get("condition")
        if condition is not None:
            if not isinstance(condition, str) or not condition.strip():
                problems.add(f"{pointer}/condition", "condition must be a non-empty expression")
            else:
                try:
                    compile_expression(condition)
                except Exception as exc:  # the expression module's own message says what is wrong
                    problems.add(f"{pointer}/condition", f"condition does not parse: {exc}")
        if "automatic" in t and not isinstance(t["automatic"], bool):
            problems.add(f"{pointer}/automatic", "automatic must be true or false")
        timing = _check_timing(problems, pointer, t)
        if timing and t.get("automatic") is False:
            problems.add(f"{pointer}/automatic", "a transition with a time is taken by the engine when it falls "
                                                 "due; it cannot be automatic: false")
        if t.get("automatic") is True or timing:
            if "requires_approval" in t:
                problems.add(f"{pointer}/requires_approval", "an automatic (or time-based) transition cannot "
                                                             "require approval; make it a requested one")
            automatic.setdefault(str(source), []).append((i, str(condition or "") + timing))
        if "action" in t:
            check_step(f"{pointer}/action", t["action"])
        if "requires_approval" in t:
            check_step(f"{pointer}/requires_approval",
                       {"type": "approval", "name": f"approve {source} -> {target}", "config": t["requires_approval"]})
        roles = t.get("roles")
        if roles is not None and (not isinstance(roles, list) or not all(isinstance(r, str) and r for r in roles)):
            problems.add(f"{pointer}/roles", "roles must be a list of role names")
    for source, autos in automatic.items():
        for k, (i, condition) in enumerate(autos):
            later = autos[k + 1:]
            if not condition and later:
                problems.add(f"/transitions/{i}", f"automatic transition from {source!r} has no condition, so the "
                                                  f"automatic transitions after it (/transitions/{later[0][0]}) "
                                                  "can never be taken: ambiguous")
            for j, other in later:
                if condition and other == condition:
                    problems.add(f"/transitions/{j}", f"automatic transitions from {source!r} /transitions/{i} and "
                                                      f"/transitions/{j} have the same condition: ambiguous")
    if not names:
        return
    initial = next(iter(names))
    reachable = _reach(graph, [initial])
    for name, i in names.items():
        if name not in reachable:
            problems.add(f"/states/{i}", f"state {name!r} is unreachable from the initial state {initial!r}")
    if not terminal:
        problems.add("/states", "no state is terminal; mark at least one with terminal: COMPLETED")
        return
    reverse: dict[str, list[str]] = {n: [] for n in names}
    for source, targets in graph.items():
        for target in targets:
            reverse[target].append(source)
    finishing = _reach(reverse, list(terminal))
    for name, i in names.items():
        if name in reachable and name not in finishing:
            problems.add(f"/states/{i}", f"state {name!r} has no way to a terminal state")


def _check_timing(problems: Any, pointer: str, t: Mapping[str, Any]) -> str:
    """Check a transition's time keys; a key naming its time ("" for none), for the ambiguity check."""
    keys = [k for k in TIME_KEYS if k in t]
    if len(keys) > 1:
        problems.add(pointer, f"a transition has at most one of {', '.join(TIME_KEYS)} (got {', '.join(keys)})")
        return "|".join(f"{k}={t[k]}" for k in keys)
    if not keys:
        return ""
    key = keys[0]
    value = t[key]
    if key == "at":
        if not (isinstance(value, str) and "{{" in value) and parse_time_ms(value) is None:
            problems.add(f"{pointer}/at", "at must be an ISO 8601 time, epoch milliseconds, or a placeholder such "
                                          "as {{trigger.review_by}}")
    elif isinstance(value, bool) or not isinstance(value, int | float | str) or not _positive(value):
        problems.add(f"{pointer}/{key}", f"{key} must be a positive number")
    return f"|{key}={value}"


def _positive(value: Any) -> bool:
    try:
        return float(value) > 0
    except ValueError:
        return False


def _reach(graph: Mapping[str, list[str]], start: list[str]) -> set[str]:
    seen = set(start)
    todo = list(start)
    while todo:
        for nxt in graph.get(todo.pop(), []):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


# --------------------------------------------------------------------------------------------- visualize

def visualize_machine(doc: Mapping[str, Any]) -> dict[str, Any]:
    """Adjacency (state -> [{to, condition, automatic, requires_approval}]) and a Mermaid stateDiagram-v2."""
    _, machine = flatten(doc)
    adjacency: dict[str, list[dict[str, Any]]] = {s.name: [] for s in machine.states}
    lines = ["stateDiagram-v2", f"  [*] --> {_mid(machine.initial)}"]
    for s in machine.states:
        lines.append(f"  state \"{s.name}\" as {_mid(s.name)}")
    for t in machine.transitions:
        adjacency[t.source].append({"to": t.target, "condition": t.condition or None, "automatic": t.automatic,
                                    "requires_approval": bool(t.approval),
                                    **({"timing": t.timing} if t.timed else {})})
        label = " / ".join(x for x in (t.timing if t.timed else "", t.condition,
                                       "auto" if t.automatic and not t.timed else "",
                                       "approval" if t.approval else "") if x)
        lines.append(f"  {_mid(t.source)} --> {_mid(t.target)}" + (f" : {label.replace(':', ' ')}" if label else ""))
    for s in machine.states:
        if s.terminal is not None:
            lines.append(f"  {_mid(s.name)} --> [*]")
    return {"adjacency": adjacency, "mermaid": "\n".join(lines)}


def _mid(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)
