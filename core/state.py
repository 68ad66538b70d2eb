"""Instance state, and `apply`: the only code that builds it.

`apply(state, event)` folds one event into the state. It never decides anything: every choice was made by
`decide` when it produced the event, so replaying an instance's events always rebuilds the same state.

Timers are part of the state (`InstanceState.timers`), not a separate table: the engine derives its
per-partition timer index from the states it holds, so a timer can never outlive or precede the state
that armed it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from core import events as ev
from core.actors import SYSTEM, Actor
from core.effects import PAYMENT_KIND
from core.timers import TimerPurpose
from core.types import (
    TERMINAL_STATUSES,
    ActorKind,
    Awaiting,
    Json,
    TaskStatus,
    WorkflowStatus,
)

RECENT_COMMANDS_KEPT = 256


@dataclass(frozen=True, kw_only=True)
class Timer:
    timer_id: str
    fire_at: int
    purpose: str  # a TimerPurpose value, stored as its string (recorded states carry the same strings)
    step: int
    attempt: int


@dataclass(frozen=True, kw_only=True)
class Vote:
    actor_id: str
    actor_kind: ActorKind
    decision: str
    at: int
    reasoning: str = ""


@dataclass(frozen=True, kw_only=True)
class Recommendation:
    """An agent's decision the step did not count (core/events.py AgentRecommendation), kept for the humans."""

    actor_id: str
    decision: str
    at: int
    reasoning: str = ""
    refusal: str = ""


@dataclass(frozen=True, kw_only=True)
class StepState:
    step: int
    status: TaskStatus = TaskStatus.PENDING
    attempt: int = 0
    awaiting: Awaiting = Awaiting.NOTHING
    started_at: int = 0
    ended_at: int = 0
    votes: tuple[Vote, ...] = ()
    approvers: Json = None
    required: int = 0
    escalation: int = 0
    retries: int = 0
    output: Json = None
    error: str = ""
    recommendations: tuple[Recommendation, ...] = ()
    counted_from: int = 0  # votes[counted_from:] count towards the quorum; earlier ones predate an escalation

    @property
    def counted_votes(self) -> tuple[Vote, ...]:
        return self.votes[self.counted_from:] if self.counted_from else self.votes


@dataclass(frozen=True, kw_only=True)
class InstanceState:
    instance_id: str
    tenant_id: str
    template_id: str
    template_version: int
    template_name: str = ""
    status: WorkflowStatus = WorkflowStatus.ACTIVE
    current_step: int = 1
    steps: tuple[StepState, ...] = ()
    trigger: Json = None
    initiated_by: Actor = SYSTEM
    agent_context: Json = None
    timers: tuple[Timer, ...] = ()
    seq: int = 0
    recent_commands: tuple[str, ...] = ()
    created_at: int = 0
    updated_at: int = 0
    failure: str = ""
    # state-machine templates only (core/machine.py): the current state, the steps still to run on the way
    # there, and a requested transition waiting for its approval step
    machine_state: str = ""
    route: tuple[int, ...] = ()
    pending_transition: str = ""
    pending_by: Actor | None = None
    pending_reason: str = ""
    # time-based transitions out of the current state whose time has come (indexes; TransitionDue)
    machine_due: tuple[int, ...] = ()

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def step_count(self) -> int:
        return len(self.steps)

    def step_state(self, step: int) -> StepState | None:
        if 1 <= step <= len(self.steps):
            return self.steps[step - 1]
        return None

    @property
    def current(self) -> StepState | None:
        return self.step_state(self.current_step)

    def timer(self, timer_id: str) -> Timer | None:
        for timer in self.timers:
            if timer.timer_id == timer_id:
                return timer
        return None

    def armed_timers(self) -> tuple[Timer, ...]:
        """Timers the engine should fire now: none while paused or finished (resume re-arms them)."""
        return self.timers if self.status == WorkflowStatus.ACTIVE else ()


_FIELDS: dict[type, frozenset[str]] = {
    cls: frozenset(f.name for f in fields(cls)) for cls in (Timer, Vote, StepState, InstanceState)
}


def evolve(obj: Any, **changes: Any) -> Any:
    """`dataclasses.replace` for the frozen, slot-less state classes, about ten times faster.

    `apply` copies the state several times per event; `replace` goes through `__init__` and the frozen
    `__setattr__` for every field. The state classes have no `__post_init__`, so copying `__dict__` is the
    same object. Unknown field names are refused as `replace` would.
    """
    cls = type(obj)
    if not _FIELDS[cls].issuperset(changes):
        raise TypeError(f"{cls.__name__} has no field {', '.join(sorted(set(changes) - _FIELDS[cls]))}")
    new = object.__new__(cls)
    attributes = new.__dict__
    attributes.update(obj.__dict__)
    attributes.update(changes)
    return new


def timer_id(instance_id: str, step: int, attempt: int, purpose: str) -> str:
    return f"{instance_id}:{step}:{attempt}:{purpose}"


def _timer(**attributes: Any) -> Timer:
    """`Timer(**attributes)` without the frozen `__init__` (every field is given)."""
    timer = object.__new__(Timer)
    timer.__dict__.update(attributes)
    return timer


def _vote(**attributes: Any) -> Vote:
    """`Vote(**attributes)` without the frozen `__init__` (every field is given)."""
    vote = object.__new__(Vote)
    vote.__dict__.update(attributes)
    return vote


def _copy(obj: Any, changes: dict[str, Any]) -> Any:
    """`evolve` without the field-name check, for the appliers' own literal field names."""
    new = object.__new__(type(obj))
    attributes = new.__dict__
    attributes.update(obj.__dict__)
    attributes.update(changes)
    return new


def _update(state: InstanceState, step: int, step_changes: dict[str, Any], **state_changes: Any) -> InstanceState:
    steps = list(state.steps)
    steps[step - 1] = _copy(steps[step - 1], step_changes)
    state_changes["steps"] = tuple(steps)
    return _copy(state, state_changes)


def _with_step(state: InstanceState, step: int, **changes: Any) -> InstanceState:
    return _update(state, step, changes)


def _timers_without_step(state: InstanceState, step: int) -> tuple[Timer, ...]:
    timers = state.timers
    for timer in timers:
        if timer.step == step:
            return tuple([t for t in timers if t.step != step])
    return timers


def _clear_step_timers(state: InstanceState, step: int) -> InstanceState:
    timers = _timers_without_step(state, step)
    return state if timers is state.timers else evolve(state, timers=timers)


def _set_timer(state: InstanceState, timer: Timer) -> InstanceState:
    kept = [t for t in state.timers if t.timer_id != timer.timer_id]
    kept.append(timer)
    return _copy(state, {"timers": tuple(kept)})


def _arm(state: InstanceState, step: int, attempt: int, purpose: TimerPurpose, fire_at: int, *,
         name: str | None = None) -> InstanceState:
    """Arm (or re-arm) the timer `instance:step:attempt:<name or purpose>`."""
    value = purpose.value  # the plain string: the state holds what recorded logs hold
    return _set_timer(state, _timer(timer_id=timer_id(state.instance_id, step, attempt, name or value),
                                    fire_at=fire_at, purpose=value, step=step, attempt=attempt))


def _finish_step(state: InstanceState, step: int, status: TaskStatus, at: int, **changes: Any) -> InstanceState:
    return _update(state, step, {"status": status, "awaiting": Awaiting.NOTHING, "ended_at": at, **changes},
                   timers=_timers_without_step(state, step))


def _apply_started(state: InstanceState | None, e: ev.InstanceStarted) -> InstanceState:
    return InstanceState(
        instance_id=e.instance_id,
        tenant_id=e.tenant_id,
        template_id=e.template_id,
        template_version=e.template_version,
        template_name=e.template_name,
        status=WorkflowStatus.ACTIVE,
        current_step=1,
        steps=tuple(StepState(step=n) for n in range(1, e.step_count + 1)),
        trigger=e.trigger,
        initiated_by=e.initiated_by,
        agent_context=e.agent_context,
        created_at=e.at,
    )


def _apply_step_started(state: InstanceState, e: ev.StepStarted) -> InstanceState:
    if state.route and state.route[0] == e.step:
        state = _copy(state, {"route": state.route[1:]})
    return _update(
        state,
        e.step,
        {
            "status": TaskStatus.IN_PROGRESS,
            "attempt": e.attempt,
            "awaiting": Awaiting.NOTHING,
            "started_at": e.at,
            "ended_at": 0,
            "votes": (),
            "counted_from": 0,
            "approvers": None,
            "required": 0,
            "escalation": 0,
            "retries": state.steps[e.step - 1].retries + 1 if e.retry else 0,
            "output": None,
            "error": "",
        },
        current_step=e.step,
        timers=_timers_without_step(state, e.step),
    )


def _apply_step_requested(state: InstanceState, e: ev.StepRequested) -> InstanceState:
    step = state.steps[e.step - 1]
    if e.kind == PAYMENT_KIND:  # the engine's own payment order: it waits for the payment service, until a time
        state = _with_step(state, e.step, awaiting=Awaiting.PAYMENT)
        return _arm(state, e.step, e.attempt, TimerPurpose.PAYMENT_TIMEOUT, e.deadline) if e.deadline else state
    if step.status is TaskStatus.IN_PROGRESS and step.awaiting is Awaiting.NOTHING:
        return _with_step(state, e.step, awaiting=Awaiting.HANDLER)
    return state  # a side request (approver notice, failure notification) changes no wait


def _apply_condition(state: InstanceState, e: ev.ConditionEvaluated) -> InstanceState:
    return _finish_step(state, e.step, TaskStatus.COMPLETED, e.at, output={"result": e.result, "branch": e.branch})


def _apply_succeeded(state: InstanceState, e: ev.StepSucceeded) -> InstanceState:
    return _finish_step(state, e.step, TaskStatus.COMPLETED, e.at, output=e.output, error="")


def _apply_failed(state: InstanceState, e: ev.StepFailed) -> InstanceState:
    if e.retry_at:
        state = _clear_step_timers(state, e.step)
        state = _arm(state, e.step, e.attempt, TimerPurpose.RETRY, e.retry_at)
        return _with_step(state, e.step, awaiting=Awaiting.RETRY, error=e.error)
    return _finish_step(state, e.step, TaskStatus.FAILED, e.at, error=e.error)


def _apply_skipped(state: InstanceState, e: ev.StepSkipped) -> InstanceState:
    return _finish_step(state, e.step, TaskStatus.SKIPPED, e.at)


def _apply_approval_requested(state: InstanceState, e: ev.ApprovalRequested) -> InstanceState:
    state = _with_step(
        state, e.step, awaiting=Awaiting.APPROVAL, approvers=e.approvers, required=e.required,
        escalation=e.escalation,
    )
    if e.deadline:
        state = _arm(state, e.step, e.attempt, TimerPurpose.APPROVAL_TIMEOUT, e.deadline)
    return state


def _apply_decision(state: InstanceState, e: ev.DecisionRecorded) -> InstanceState:
    step = state.steps[e.step - 1]
    vote = _vote(actor_id=e.actor.id, actor_kind=e.actor.kind, decision=e.decision, at=e.at, reasoning=e.reasoning)
    return _with_step(state, e.step, votes=(*step.votes, vote))


def _apply_recommendation(state: InstanceState, e: ev.AgentRecommendation) -> InstanceState:
    step = state.steps[e.step - 1]
    note = Recommendation(actor_id=e.actor.id, decision=e.decision, at=e.at, reasoning=e.reasoning,
                          refusal=e.refusal)
    return _with_step(state, e.step, recommendations=(*step.recommendations, note))


def _apply_approved(state: InstanceState, e: ev.StepApproved) -> InstanceState:
    return _finish_step(state, e.step, TaskStatus.APPROVED, e.at, output={"approved_by": list(e.approved_by)})


def _apply_rejected(state: InstanceState, e: ev.StepRejected) -> InstanceState:
    return _finish_step(
        state, e.step, TaskStatus.REJECTED, e.at, output={"rejected_by": list(e.rejected_by)}, error=e.reason
    )


STEP_STAYS_OPEN_ON_TIMEOUT = frozenset({"escalate", "auto_approve", "auto_reject"})


def _apply_timed_out(state: InstanceState, e: ev.StepTimedOut) -> InstanceState:
    if e.action in STEP_STAYS_OPEN_ON_TIMEOUT:
        # the step goes on (escalation) or the next event closes it: only the spent timer goes
        return evolve(state, timers=tuple(t for t in state.timers if t.timer_id != e.timer_id))
    return _finish_step(state, e.step, TaskStatus.TIMED_OUT, e.at, error=f"timed out ({e.action})")


def _apply_escalated(state: InstanceState, e: ev.ApprovalEscalated) -> InstanceState:
    step = state.steps[e.step - 1]
    # resets_votes (every escalation decided since it exists): the votes so far stay on record but no longer
    # count; the escalated approvers must make the whole quorum (docs/security.md, maker-checker)
    counted_from = len(step.votes) if e.resets_votes else step.counted_from
    state = _with_step(state, e.step, approvers=e.approvers, escalation=e.escalation, counted_from=counted_from)
    # an escalation replaces the deadline (a manual one arrives while the old timer is still armed)
    if any(t.step == e.step and t.purpose == TimerPurpose.APPROVAL_TIMEOUT for t in state.timers):
        state = evolve(state, timers=tuple(t for t in state.timers
                                           if not (t.step == e.step and t.purpose == TimerPurpose.APPROVAL_TIMEOUT)))
    if e.deadline:
        state = _arm(state, e.step, step.attempt, TimerPurpose.APPROVAL_TIMEOUT, e.deadline,
                     name=f"approval_timeout_{e.escalation}")
    return state


def _apply_wait_started(state: InstanceState, e: ev.WaitStarted) -> InstanceState:
    awaiting = Awaiting.CONDITION if e.condition else Awaiting.TIME
    state = _with_step(state, e.step, awaiting=awaiting)
    for fire_at, purpose in ((e.until, TimerPurpose.WAIT_UNTIL), (e.poll_at, TimerPurpose.WAIT_POLL),
                             (e.deadline, TimerPurpose.WAIT_TIMEOUT)):
        if fire_at:
            state = _arm(state, e.step, e.attempt, purpose, fire_at)
    return state


def _apply_wait_polled(state: InstanceState, e: ev.WaitPolled) -> InstanceState:
    return _arm(state, e.step, e.attempt, TimerPurpose.WAIT_POLL, e.poll_at)


def _apply_external_accepted(state: InstanceState, e: ev.ExternalCallAccepted) -> InstanceState:
    state = _with_step(state, e.step, awaiting=Awaiting.CALLBACK)
    if e.deadline:
        state = _arm(state, e.step, e.attempt, TimerPurpose.CALLBACK_TIMEOUT, e.deadline)
    return state


def _apply_review_requested(state: InstanceState, e: ev.HumanReviewRequested) -> InstanceState:
    state = _clear_step_timers(state, e.step)
    state = _with_step(
        state, e.step, status=TaskStatus.IN_PROGRESS, awaiting=Awaiting.REVIEW, approvers=e.approvers,
        required=1, votes=(), counted_from=0, error=e.error, ended_at=0,
    )
    if e.deadline:
        state = _arm(state, e.step, e.attempt, TimerPurpose.REVIEW_TIMEOUT, e.deadline)
    return state


def _apply_paused(state: InstanceState, e: ev.InstancePaused) -> InstanceState:
    return evolve(state, status=WorkflowStatus.PAUSED)


def _apply_resumed(state: InstanceState, e: ev.InstanceResumed) -> InstanceState:
    return evolve(state, status=WorkflowStatus.ACTIVE)


def _apply_cancelled(state: InstanceState, e: ev.InstanceCancelled) -> InstanceState:
    return evolve(state, status=WorkflowStatus.CANCELLED, timers=(), failure=e.reason)


def _apply_retried(state: InstanceState, e: ev.StepRetried) -> InstanceState:
    state = _with_step(state, e.step, status=TaskStatus.PENDING, awaiting=Awaiting.NOTHING, error="")
    return evolve(state, status=WorkflowStatus.ACTIVE, current_step=e.step, failure="")


def _apply_completed(state: InstanceState, e: ev.InstanceCompleted) -> InstanceState:
    return evolve(state, status=WorkflowStatus.COMPLETED, timers=(), current_step=len(state.steps) + 1)


def _apply_failed_instance(state: InstanceState, e: ev.InstanceFailed) -> InstanceState:
    return evolve(state, status=WorkflowStatus.FAILED, timers=(), failure=e.reason)


def _apply_transition_requested(state: InstanceState, e: ev.TransitionRequested) -> InstanceState:
    return _copy(state, {"route": tuple(e.route), "pending_transition": e.to_state, "pending_by": e.actor,
                         "pending_reason": e.reason, "current_step": 0})


def _apply_transition_taken(state: InstanceState, e: ev.TransitionTaken) -> InstanceState:
    # leaving a state drops its time-based transitions' timers; entering one arms its own (fresh ids: the
    # entry's seq is in them, so a stale FireTimer from an earlier visit is refused as "no longer armed")
    due = TimerPurpose.TRANSITION_DUE.value
    timers = [t for t in state.timers if t.purpose != due]
    timers += [_timer(timer_id=timer_id(state.instance_id, 0, index, f"{due}@{e.seq}"), fire_at=fire_at,
                      purpose=due, step=0, attempt=index)
               for index, fire_at in zip(e.due_transitions, e.due_at, strict=True)]
    return _copy(state, {"machine_state": e.to_state, "route": tuple(e.route), "pending_transition": "",
                         "pending_by": None, "pending_reason": "", "current_step": 0, "machine_due": (),
                         "timers": tuple(timers)})


def _apply_transition_due(state: InstanceState, e: ev.TransitionDue) -> InstanceState:
    return _copy(state, {"machine_due": (*state.machine_due, e.transition),
                         "timers": tuple(t for t in state.timers if t.timer_id != e.timer_id)})


def _apply_transition_declined(state: InstanceState, e: ev.TransitionDeclined) -> InstanceState:
    return _copy(state, {"route": (), "pending_transition": "", "pending_by": None, "pending_reason": "",
                         "current_step": 0})


def _apply_nothing(state: InstanceState, e: ev.Event) -> InstanceState:
    return state


_APPLIERS = {
    ev.InstanceStarted: _apply_started,
    ev.StepStarted: _apply_step_started,
    ev.StepRequested: _apply_step_requested,
    ev.ConditionEvaluated: _apply_condition,
    ev.StepSucceeded: _apply_succeeded,
    ev.StepFailed: _apply_failed,
    ev.StepSkipped: _apply_skipped,
    ev.ApprovalRequested: _apply_approval_requested,
    ev.DecisionRecorded: _apply_decision,
    ev.AgentRecommendation: _apply_recommendation,
    ev.StepApproved: _apply_approved,
    ev.StepRejected: _apply_rejected,
    ev.StepTimedOut: _apply_timed_out,
    ev.ApprovalEscalated: _apply_escalated,
    ev.WaitStarted: _apply_wait_started,
    ev.WaitPolled: _apply_wait_polled,
    ev.ExternalCallAccepted: _apply_external_accepted,
    ev.HumanReviewRequested: _apply_review_requested,
    ev.InstancePaused: _apply_paused,
    ev.InstanceResumed: _apply_resumed,
    ev.InstanceCancelled: _apply_cancelled,
    ev.StepRetried: _apply_retried,
    ev.InstanceCompleted: _apply_completed,
    ev.InstanceFailed: _apply_failed_instance,
    ev.AdvanceChecked: _apply_nothing,
    ev.CommandRejected: _apply_nothing,
    ev.TransitionRequested: _apply_transition_requested,
    ev.TransitionTaken: _apply_transition_taken,
    ev.TransitionDeclined: _apply_transition_declined,
    ev.TransitionDue: _apply_transition_due,
}


def apply(state: InstanceState | None, event: ev.Event) -> InstanceState:
    """Fold one event into the state; also advances `seq` and remembers the causing command id.

    An event outside the instance's sequence (`seq == 0`: a refusal of another tenant's command, or of one
    for an instance that does not exist) changes nothing, not even `seq`."""
    if event.seq == 0 and state is not None:
        return state
    applier = _APPLIERS[type(event)]
    new = applier(state, event)  # type: ignore[arg-type]
    recent = new.recent_commands
    # A rejected command changed nothing, so it is not remembered: the same command sent again (the sweep
    # re-firing a timer that was refused while paused) is judged afresh on the state it meets then.
    if event.command_id and type(event) is not ev.CommandRejected and (not recent or recent[-1] != event.command_id):
        recent = (*recent, event.command_id)[-RECENT_COMMANDS_KEPT:]
    if new is state:
        return _copy(new, {"seq": event.seq, "updated_at": event.at, "recent_commands": recent})
    # The applier built `new` for this event alone and nobody else holds it yet: finishing it in place saves
    # a copy per event. Never do this to `state`, which the caller (and earlier decisions) still hold.
    attributes = new.__dict__
    attributes["seq"] = event.seq
    attributes["updated_at"] = event.at
    attributes["recent_commands"] = recent
    return new


def replay(events: list[ev.Event]) -> InstanceState | None:
    state: InstanceState | None = None
    for event in events:
        state = apply(state, event)
    return state
