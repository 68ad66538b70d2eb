"""Running a state-machine instance: the engine loop's route, transitions requested by people and agents,
and `transitions_now` (what the caller may request now, and why not the others).

The loop is `decide`'s own (core/decide.py calls `run_machine` for a template with a machine): it starts
the next step of the route, waits while a step is in progress, and once the route is done it ends the
instance in a terminal state, takes a transition whose approval was granted, or takes the first automatic
transition (declared order) whose condition holds. Otherwise the instance rests in its state until a
`RequestTransition` arrives or a time-based transition falls due (its timer, armed on entering the state,
fires: `on_transition_due` records `TransitionDue`, and the loop takes it as an automatic transition). The
rule "which transition may be taken" has one home: `why_not` below, used by both the command and
`transitions_now`; whether an automatic one holds is `_holds`, the time included.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from core import commands as cmd
from core import events as ev
from core.actors import SYSTEM, Actor
from core.approvers import transition_refusal
from core.expressions import ExpressionError
from core.machine import MachineTransition, route
from core.recorder import Recorder
from core.state import InstanceState, Timer
from core.template import CompiledTemplate
from core.timers import TimerPurpose, parse_time_ms
from core.types import ActorKind, TaskStatus, WorkflowStatus

MAX_MOVES_PER_DECISION = 1000
_OK = frozenset({TaskStatus.COMPLETED, TaskStatus.APPROVED, TaskStatus.SKIPPED})


def _finished_ok(rec: Recorder, number: int) -> bool:
    step_state = rec.step_state(number)
    if step_state.status in _OK:
        return True
    return (step_state.status is TaskStatus.TIMED_OUT
            and rec.template.step(number).on_timeout.final_action == "continue")


def run_machine(rec: Recorder, start_step: Callable[[Recorder, int], None],
                failure_reason: Callable[[Recorder, InstanceState], str]) -> None:
    machine = rec.template.machine
    assert machine is not None
    for _ in range(MAX_MOVES_PER_DECISION):
        state = rec.state
        if state is None or state.status is not WorkflowStatus.ACTIVE:
            return
        if not state.machine_state:
            initial = machine.machine.initial
            _take(rec, "", initial, actor=SYSTEM, automatic=True, reason="instance started",
                  route=machine.machine.state(initial).entry)
            continue
        current = state.current
        if current is not None:
            if current.status is TaskStatus.PENDING:  # a manual retry put it back
                start_step(rec, state.current_step)
                continue
            if current.status is TaskStatus.IN_PROGRESS:
                return
            if not _finished_ok(rec, state.current_step):
                if state.pending_transition and current.status is TaskStatus.REJECTED:
                    rec.emit(ev.TransitionDeclined, from_state=state.machine_state,
                             to_state=state.pending_transition, reason=current.error or "approval rejected")
                    continue
                rec.emit(ev.InstanceFailed, step=state.current_step, reason=failure_reason(rec, state))
                return
        if state.route:
            start_step(rec, state.route[0])
            continue
        here = machine.machine.state(state.machine_state)
        if here.terminal is not None:
            _end(rec, here.name, here.terminal)
            return
        if state.pending_transition:
            transition = _find(rec.template, state.machine_state, state.pending_transition)
            actor = state.pending_by or SYSTEM
            _take(rec, transition.source, transition.target, actor=actor, reason=state.pending_reason,
                  route=route(machine.machine, transition))
            continue
        automatic = _first_automatic(rec)
        if automatic is None:
            return  # rests in its state until a transition is requested or a timed one falls due
        why = " and ".join(x for x in (automatic.timing if automatic.timed else "", automatic.condition) if x)
        _take(rec, automatic.source, automatic.target, actor=SYSTEM, automatic=True,
              reason=f"automatic: {why or 'always'}", route=route(machine.machine, automatic))
    rec.emit(ev.InstanceFailed, step=rec.instance.current_step,
             reason=f"more than {MAX_MOVES_PER_DECISION} moves in one decision: a loop of automatic transitions "
                    "with no wait")


def _take(rec: Recorder, source: str, target: str, *, actor: Actor, reason: str, route: tuple[int, ...],
          automatic: bool = False, **audit: Any) -> None:
    """Emit the TransitionTaken into `target`, with when each of its time-based transitions falls due."""
    indexes, times = [], []
    for t in rec.template.machine.machine.outgoing(target):  # type: ignore[union-attr]
        fire_at = due_at(rec, t) if t.timed else None
        if fire_at is not None:
            indexes.append(t.index)
            times.append(fire_at)
    rec.emit(ev.TransitionTaken, from_state=source, to_state=target, actor=actor, reason=reason,
             automatic=automatic, route=route, due_transitions=tuple(indexes), due_at=tuple(times), **audit)


def due_at(rec: Recorder, transition: MachineTransition) -> int | None:
    """When a time-based transition falls due if its source state is entered now (epoch ms); None when its
    `at` does not render to a time (then it never falls due, and `transitions_now` shows no due time)."""
    if transition.after_ms:
        return rec.now + transition.after_ms
    return parse_time_ms(rec.render(transition.at))


def on_transition_due(rec: Recorder, timer: Timer) -> None:
    """A TRANSITION_DUE timer fired (it is only armed while the instance is in the transition's source state):
    record that the transition is due; the loop that runs after every command takes it if it may."""
    machine = rec.template.machine
    assert machine is not None
    transition = machine.machine.transitions[timer.attempt]
    rec.emit(ev.TransitionDue, from_state=transition.source, to_state=transition.target,
             transition=transition.index, timer_id=timer.timer_id)


def _end(rec: Recorder, name: str, status: WorkflowStatus) -> None:
    if status is WorkflowStatus.COMPLETED:
        rec.emit(ev.InstanceCompleted)
    elif status is WorkflowStatus.CANCELLED:
        rec.emit(ev.InstanceCancelled, reason=f"reached terminal state {name}")
    else:
        rec.emit(ev.InstanceFailed, step=0, reason=f"reached terminal state {name}")


def _find(template: CompiledTemplate, source: str, target: str) -> MachineTransition:
    assert template.machine is not None
    for t in template.machine.machine.outgoing(source):
        if t.target == target:
            return t
    raise KeyError(f"{source} -> {target}")


def _holds(rec: Recorder, transition: MachineTransition) -> tuple[bool, str]:
    machine = rec.template.machine
    assert machine is not None
    if transition.timed and transition.index not in rec.instance.machine_due:
        return False, f"not yet due ({transition.timing})"
    expression = machine.conditions.get(transition.index)
    if expression is None:
        return True, ""
    try:
        return bool(expression.evaluate(rec.names())), f"condition {transition.condition!r} is false"
    except ExpressionError as exc:
        return False, f"condition {transition.condition!r} failed to evaluate: {exc}"


def _first_automatic(rec: Recorder) -> MachineTransition | None:
    machine = rec.template.machine
    assert machine is not None
    for t in machine.machine.outgoing(rec.instance.machine_state):
        if t.automatic and _holds(rec, t)[0]:
            return t
    return None


def _settled(state: InstanceState) -> str | None:
    """Why the instance cannot take a requested transition now (None: it rests in its state)."""
    if state.status is not WorkflowStatus.ACTIVE:
        return f"instance is {state.status.value}"
    if state.pending_transition:
        return f"approval pending for {state.machine_state} -> {state.pending_transition}"
    current = state.current
    if state.route or (current is not None and current.status is TaskStatus.IN_PROGRESS):
        return f"state {state.machine_state!r} is still running its actions"
    return None


def why_not(rec: Recorder, transition: MachineTransition, actor: Actor, at: int = 0) -> str | None:
    """The one rule for a requested transition: None if `actor` may request it now (`at`: the command's time,
    for an agent's hours), else why not. Who may take a role-restricted one is `core.approvers`'s rule."""
    busy = _settled(rec.instance)
    if busy:
        return busy
    if transition.timed:
        return f"time-based: the engine takes it when it falls due ({transition.timing})"
    if transition.automatic:
        return "automatic: the engine takes it when its condition holds"
    trigger = rec.instance.trigger if isinstance(rec.instance.trigger, dict) else {}
    refused = transition_refusal(actor, transition.roles, amount=trigger.get("amount"),
                                 currency=trigger.get("currency"), at=at or rec.now,
                                 initiator=rec.instance.initiated_by,
                                 separation_of_duties=rec.template.template.separation_of_duties)
    if refused:
        return refused
    holds, reason = _holds(rec, transition)
    return None if holds else reason


def on_request_transition(rec: Recorder, command: cmd.RequestTransition) -> None:
    state = rec.instance
    if rec.template.machine is None:
        rec.reject(f"Template {state.template_id} is a step list; it has no states to transition between")
        return
    transition = next((t for t in rec.template.machine.machine.outgoing(state.machine_state)
                       if t.target == command.target), None)
    if transition is None:
        rec.reject(f"Expected a transition from {state.machine_state!r}, but there is none to {command.target!r}")
        return
    refusal = why_not(rec, transition, command.actor, command.issued_at)
    if refusal:
        rec.reject(f"Expected {transition.label} to be available, but: {refusal}")
        return
    # an agent's request carries its signature's status and agent_context into the audit entry
    audit = ({"signature_status": command.signature_status, "agent_context": command.agent_context}
             if command.actor.kind is ActorKind.AGENT else {})
    if transition.approval:
        rec.emit(ev.TransitionRequested, from_state=transition.source, to_state=transition.target,
                 actor=command.actor, reason=command.reason, route=(transition.approval,), **audit)
        return
    _take(rec, transition.source, transition.target, actor=command.actor, reason=command.reason,
          route=route(rec.template.machine.machine, transition), **audit)


def transitions_now(state: InstanceState, template: CompiledTemplate, actor: Actor, now: int) -> dict[str, Any]:
    """For `GET .../transitions`: the current state, and every outgoing transition with whether `actor` may
    request it now and, if not, why (automatic, condition false, role missing, approval pending, busy)."""
    if template.machine is None:
        return {"state": None, "transitions": []}
    rec = Recorder(state=state, command=cmd.Advance(command_id="", instance_id=state.instance_id),
                   template=template, now=now)
    items = []
    armed = {t.attempt: t.fire_at for t in state.timers if t.purpose == TimerPurpose.TRANSITION_DUE}
    for t in template.machine.machine.outgoing(state.machine_state):
        refusal = why_not(rec, t, actor)
        item = {"to": t.target, "automatic": t.automatic, "requires_approval": bool(t.approval),
                "condition": t.condition or None, "roles": list(t.roles), "available": refusal is None,
                "why_not": refusal}
        if t.timed:  # when it falls due (None once it has, or if its `at` did not render to a time)
            item["due_at"] = armed.get(t.index)
        items.append(item)
    return {"state": state.machine_state, "pending_transition": state.pending_transition or None,
            "transitions": items}
