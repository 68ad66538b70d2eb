"""`decide(state, command, template, now) -> Decision`: the whole workflow state machine.

Pure and deterministic: no clock (`now` is an argument, epoch milliseconds), no randomness, no I/O. It
checks the command against the state, appends events (each applied at once by `apply`), then runs the
instance forward: start the pending step, and after a finished step follow its branch (`continue`,
`skip_to`, `complete`, `fail`), within the same decision, until the instance waits on something outside
(a handler, an approver, a timer, a callback) or ends.

An input that cannot apply (a duplicate, a stale attempt, a wrong step, anything after the end) changes
nothing but the log: one `CommandRejected` event that says what was expected.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from core import commands as cmd
from core import events as ev
from core.blocking import blocking as who_is_blocking
from core.blocking import blocking_text as describe_blocking
from core.effects import PaymentOrder, StepRequest
from core.machine_run import on_request_transition, on_transition_due, run_machine
from core.payments import trigger_refusal
from core.recorder import Recorder
from core.state import InstanceState, StepState
from core.steps import REVIEW, kind_of, timer_owner
from core.steps.failure import fail_attempt
from core.template import CompiledTemplate, Target
from core.timers import TimerPurpose
from core.types import Awaiting, TaskStatus, WorkflowStatus

MAX_TRANSITIONS_PER_DECISION = 1000


@dataclass(frozen=True)
class Decision:
    state: InstanceState | None
    events: list[ev.Event] = field(default_factory=list)
    effects: list[StepRequest | PaymentOrder] = field(default_factory=list)
    forget: bool = False  # the engine may drop the instance's state (ExpireInstance of a finished one)

    @property
    def rejected(self) -> bool:
        return bool(self.events) and all(isinstance(e, ev.CommandRejected) for e in self.events)


def decide(state: InstanceState | None, command: cmd.Command, template: CompiledTemplate, now: int) -> Decision:
    rec = Recorder(state=state, command=command, template=template, now=now)
    if state is None:
        if isinstance(command, cmd.StartInstance):
            _start_instance(rec, command)
            try:
                _run(rec)
            except Exception as exc:
                return fail_on_error(None, command, template, now,
                                     f"error while starting: {type(exc).__name__}: {exc}")
            return Decision(rec.state, rec.events, rec.effects)
        return Decision(None, [ev.CommandRejected(
            instance_id=command.instance_id, seq=0, at=now, command_id=command.command_id,
            command_type=type(command).__name__, reason=f"Expected an existing instance {command.instance_id}, "
                                                        "but there is none",
        )])
    foreign = _foreign(state, command, now)
    if foreign is not None:
        return foreign
    if isinstance(command, cmd.RetryStep):
        return retry_failed(state, command, template, now)
    if isinstance(command, cmd.ExpireInstance):
        return _expire(state, command, rec)
    refusal = _precheck(state, command, template)
    if refusal:
        rec.reject(refusal)
        return Decision(rec.state, rec.events, rec.effects)
    handler = HANDLERS[type(command)]
    try:
        handler(rec, command)
        _run(rec)
    except Exception as exc:
        return fail_on_error(state, command, template, now, f"error while deciding {type(command).__name__}: "
                                                            f"{type(exc).__name__}: {exc}")
    return Decision(rec.state, rec.events, rec.effects)


MAX_REASON_CHARS = 1000


def fail_on_error(state: InstanceState | None, command: cmd.Command, template: CompiledTemplate, now: int,
                  reason: str) -> Decision:
    """An error while deciding one instance fails that instance; it never makes the instance vanish.

    The decision is made again from the state before the command: the current step fails (its retry policy
    is skipped, its `on_failure` applies: skip, human review, or failing the instance), with the error in the
    audit trail. If even that raises, the instance fails outright. A start that errs still starts the
    instance first, so it exists and says why it failed. The engine calls this too, as its last resort for
    an error outside `decide` (streams/processor.py).
    """
    reason = reason if len(reason) <= MAX_REASON_CHARS else reason[:MAX_REASON_CHARS] + "..."
    try:
        rec = _restarted(state, command, template, now)
        if rec.state is None:
            return Decision(None, rec.events, rec.effects)
        instance = rec.instance
        current = instance.current
        if instance.status is WorkflowStatus.ACTIVE and current is not None:
            number = instance.current_step
            step = rec.template.step(number)
            if current.status is TaskStatus.PENDING:
                rec.emit(ev.StepStarted, step=number, name=step.spec.name, type=step.spec.type.value,
                         attempt=current.attempt + 1)
            if rec.step_state(number).status is TaskStatus.IN_PROGRESS:
                fail_attempt(rec, step, reason, retryable=False)
                _run(rec)
                return Decision(rec.state, rec.events, rec.effects)
    except Exception:
        pass
    rec = _restarted(state, command, template, now)
    if rec.state is None:
        return Decision(None, rec.events, rec.effects)
    if rec.instance.is_terminal:
        rec.reject(reason)
    else:
        rec.emit(ev.InstanceFailed, step=rec.instance.current_step, reason=reason)
    return Decision(rec.state, rec.events, rec.effects)


def _restarted(state: InstanceState | None, command: cmd.Command, template: CompiledTemplate,
               now: int) -> Recorder:
    rec = Recorder(state=state, command=command, template=template, now=now)
    if state is None and isinstance(command, cmd.StartInstance):
        _start_instance(rec, command)
    return rec


def _expire(state: InstanceState, command: cmd.ExpireInstance, rec: Recorder) -> Decision:
    if not state.is_terminal:
        rec.reject(f"Expected a finished instance to expire, but it is {state.status.value}")
    elif state.updated_at != command.ended_at:
        rec.reject(f"Expected the instance as it was at {command.ended_at}, but it changed at {state.updated_at}")
    else:
        return Decision(None, [], [], forget=True)
    return Decision(rec.state, rec.events, rec.effects)


def _foreign(state: InstanceState, command: cmd.Command, now: int) -> Decision | None:
    """A command whose actor belongs to another tenant: refused outside the instance's sequence (seq 0, the
    state untouched, not even `seq`/`updated_at`), carrying the actor and its tenant, so the refusal lands in
    the actor's tenant's security log and never in the instance's audit trail (issue 10)."""
    actor = getattr(command, "actor", None)
    if actor is None or not actor.tenant_id or actor.tenant_id == state.tenant_id:
        return None
    return Decision(state, [ev.CommandRejected(
        instance_id=command.instance_id, seq=0, at=now,
        command_id=command.command_id, command_type=type(command).__name__,
        reason=f"{actor.id} belongs to another tenant", actor_id=actor.id, actor_tenant_id=actor.tenant_id)])


def _precheck(state: InstanceState, command: cmd.Command, template: CompiledTemplate) -> str | None:
    refusal = _precheck_any_status(state, command, template)
    if refusal is None and state.is_terminal:
        return f"Instance is {state.status.value}; it accepts no more commands"
    return refusal


def _precheck_any_status(state: InstanceState, command: cmd.Command, template: CompiledTemplate) -> str | None:
    if command.command_id in state.recent_commands:
        return f"Command {command.command_id} was already applied"
    if command.instance_id != state.instance_id:
        return f"Expected a command for instance {state.instance_id}, but got one for {command.instance_id}"
    if isinstance(command, cmd.StartInstance):
        return f"Instance {state.instance_id} already exists (started from {state.template_id})"
    if (template.template.template_id, template.template.version) != (state.template_id, state.template_version):
        return (f"Expected template {state.template_id} v{state.template_version}, but was given "
                f"{template.template.template_id} v{template.template.version}")
    return None


def _start_instance(rec: Recorder, command: cmd.StartInstance) -> None:
    template = rec.template.template
    if (command.template_id, command.template_version) != (template.template_id, template.version):
        rec.events.append(ev.CommandRejected(
            instance_id=command.instance_id, seq=0, at=rec.now, command_id=command.command_id,
            command_type="StartInstance",
            reason=f"Expected template {command.template_id} v{command.template_version}, but was given "
                   f"{template.template_id} v{template.version}",
        ))
        return
    refusal = trigger_refusal(command.trigger)
    if refusal:
        rec.events.append(ev.CommandRejected(
            instance_id=command.instance_id, seq=0, at=rec.now, command_id=command.command_id,
            command_type="StartInstance", reason=f"Expected trigger facts an instance can start on, but {refusal}"))
        return
    rec.emit(ev.InstanceStarted, template_id=template.template_id, template_version=template.version,
             tenant_id=command.tenant_id, template_name=template.name, trigger=command.trigger,
             source=command.source, initiated_by=command.initiated_by, agent_context=command.agent_context,
             step_count=len(template.steps))


def _current_step_is(rec: Recorder, step: int, what: str) -> bool:
    state = rec.instance
    if step != state.current_step:
        rec.reject(f"Expected {what} for step {state.current_step}, but got one for step {step}")
        return False
    return True


def _step_input(rec: Recorder, command: Any, *, what: str, lifecycle: str, missing: str,
                paused: str | None = None, refusal: Callable[[StepState], str | None] | None = None) -> None:
    """Route an input for one step (a decision, a result, an escalation, a callback) to its step type.

    `paused` names the inputs that wait while the instance is paused; `refusal` is a check of the step's
    state first; `missing` is the rejection when the step type has no such lifecycle ({n}: the step number,
    {type}: its type, {awaiting}: what it awaits). A step under human review takes decisions by the
    approval rules (`REVIEW`), whatever its type.
    """
    if paused and rec.instance.status is not WorkflowStatus.ACTIVE:
        rec.reject(f"Instance is {rec.instance.status.value}; {paused} wait until it is resumed")
        return
    if not _current_step_is(rec, command.step, what):
        return
    step = rec.template.step(command.step)
    step_state = rec.step_state(command.step)
    why_not = refusal(step_state) if refusal else None
    if why_not:
        rec.reject(why_not)
        return
    review = lifecycle == "on_decision" and step_state.awaiting is Awaiting.REVIEW
    handler = getattr(REVIEW if review else kind_of(step.spec.type), lifecycle)
    if handler is None:
        rec.reject(missing.format(n=command.step, type=step.spec.type.value,
                                  awaiting=step_state.awaiting.value or "nothing"))
        return
    handler(rec, step, command)


def _on_decision(rec: Recorder, command: cmd.RecordDecision) -> None:
    _step_input(rec, command, what="a decision", lifecycle="on_decision", paused="decisions",
                missing="Expected step {n} to await a decision, but it awaits {awaiting}")


def _on_result(rec: Recorder, command: cmd.ReportStepResult) -> None:
    def stale(step_state: StepState) -> str | None:
        if command.attempt == step_state.attempt and step_state.awaiting is Awaiting.HANDLER:
            return None
        return (f"Expected a result for step {command.step} attempt {step_state.attempt} "
                f"({step_state.status.value}, awaiting {step_state.awaiting.value or 'nothing'}), but got "
                f"attempt {command.attempt}")

    _step_input(rec, command, what="a result", lifecycle="on_result", refusal=stale,
                missing="Step {n} is a {type} step; it takes no handler results")


def _on_payment_result(rec: Recorder, command: cmd.RecordPaymentResult) -> None:
    _step_input(rec, command, what="a payment result", lifecycle="on_payment",
                missing="Step {n} is a {type} step; it orders no payments")


def _on_escalate(rec: Recorder, command: cmd.EscalateApproval) -> None:
    _step_input(rec, command, what="an escalation", lifecycle="on_escalate", paused="escalations",
                missing="Step {n} is a {type} step; only approvals escalate")


def _on_complete_external(rec: Recorder, command: cmd.CompleteExternal) -> None:
    _step_input(rec, command, what="a completion callback", lifecycle="on_callback",
                missing="Expected step {n} to await an external callback, but it awaits {awaiting}")


def _on_timer(rec: Recorder, command: cmd.FireTimer) -> None:
    state = rec.instance
    timer = state.timer(command.timer_id)
    if timer is None:
        rec.reject(f"Timer {command.timer_id} is no longer armed")
        return
    if state.status is not WorkflowStatus.ACTIVE:
        rec.reject(f"Instance is {state.status.value}; timer {command.timer_id} fires after resume")
        return
    if timer.purpose == TimerPurpose.RETRY:  # the failure policy's: the loop starts the next attempt
        _start_step(rec, timer.step, retry=True)
        return
    if timer.purpose == TimerPurpose.TRANSITION_DUE:  # the state machine's own (core/machine_run.py)
        on_transition_due(rec, timer)
        return
    owner = timer_owner(timer.purpose)
    if owner is None or owner.on_timer is None:
        rec.reject(f"Timer {command.timer_id} has an unknown purpose {timer.purpose!r}")
        return
    owner.on_timer(rec, rec.template.step(timer.step), timer)


def _on_advance(rec: Recorder, command: cmd.Advance) -> None:
    state = rec.instance
    if state.status is not WorkflowStatus.ACTIVE:
        rec.emit(ev.AdvanceChecked, actor=command.actor, blocking=f"instance is {state.status.value}")
        return
    if state.current is not None:
        step = rec.template.step(state.current_step)
        on_advance = kind_of(step.spec.type).on_advance
        if on_advance is not None and on_advance(rec, step):
            return
    rec.emit(ev.AdvanceChecked, actor=command.actor, blocking=blocking_text(state, rec.template))


def _on_pause(rec: Recorder, command: cmd.PauseInstance) -> None:
    if rec.instance.status is not WorkflowStatus.ACTIVE:
        rec.reject(f"Expected an ACTIVE instance to pause, but it is {rec.instance.status.value}")
        return
    rec.emit(ev.InstancePaused, actor=command.actor, reason=command.reason)


def _on_resume(rec: Recorder, command: cmd.ResumeInstance) -> None:
    if rec.instance.status is not WorkflowStatus.PAUSED:
        rec.reject(f"Expected a PAUSED instance to resume, but it is {rec.instance.status.value}")
        return
    rec.emit(ev.InstanceResumed, actor=command.actor)


def _on_cancel(rec: Recorder, command: cmd.CancelInstance) -> None:
    rec.emit(ev.InstanceCancelled, actor=command.actor, reason=command.reason or "cancelled")


HANDLERS: dict[type[cmd.Command], Callable[[Recorder, Any], None]] = {
    cmd.RecordDecision: _on_decision,
    cmd.ReportStepResult: _on_result,
    cmd.RecordPaymentResult: _on_payment_result,
    cmd.CompleteExternal: _on_complete_external,
    cmd.FireTimer: _on_timer,
    cmd.Advance: _on_advance,
    cmd.PauseInstance: _on_pause,
    cmd.ResumeInstance: _on_resume,
    cmd.CancelInstance: _on_cancel,
    cmd.EscalateApproval: _on_escalate,
    cmd.RequestTransition: on_request_transition,
}


def retry_failed(state: InstanceState, command: cmd.RetryStep, template: CompiledTemplate, now: int) -> Decision:
    """RetryStep is the one command a terminal (FAILED) instance accepts."""
    rec = Recorder(state=state, command=command, template=template, now=now)
    step_state = state.step_state(command.step)
    refusal = _precheck_any_status(state, command, template)
    if refusal:
        rec.reject(refusal)
    elif state.status is not WorkflowStatus.FAILED:
        rec.reject(f"Expected a FAILED instance to retry, but it is {state.status.value}")
    elif command.step != state.current_step or step_state is None or step_state.status not in (
            TaskStatus.FAILED, TaskStatus.TIMED_OUT, TaskStatus.REJECTED):
        rec.reject(f"Expected a retry of failed step {state.current_step}, but got step {command.step}")
    else:
        rec.emit(ev.StepRetried, step=command.step, actor=command.actor)
        try:
            _run(rec)
        except Exception as exc:  # the instance stays FAILED; the rejection says why the retry could not run
            return fail_on_error(state, command, template, now, f"error while retrying: {type(exc).__name__}: {exc}")
    return Decision(rec.state, rec.events, rec.effects)


# ------------------------------------------------------------------------------------------------ the loop

def _start_step(rec: Recorder, number: int, *, retry: bool = False) -> None:
    step = rec.template.step(number)
    previous = rec.step_state(number)
    rec.emit(ev.StepStarted, step=number, name=step.spec.name, type=step.spec.type.value,
             attempt=previous.attempt + 1, retry=retry)
    kind_of(step.spec.type).start(rec, step)


def next_target(template: CompiledTemplate, state: InstanceState) -> Target:
    """Where a finished current step leads, derived from the step's outcome and its config."""
    number = state.current_step
    step = template.step(number)
    step_state = state.steps[number - 1]
    status = step_state.status
    if status is TaskStatus.COMPLETED and not kind_of(step.spec.type).falls_through:
        branch = (step_state.output or {}).get("branch")
        return step.targets.get(branch, FAIL)
    if status in _MOVES_ON or (status is TaskStatus.TIMED_OUT and step.on_timeout.final_action == "continue"):
        return Target("goto", number + 1) if number < template.step_count else COMPLETE
    if status is TaskStatus.REJECTED:
        return step.targets.get("on_reject", FAIL)
    return FAIL


FAIL = Target("fail")
COMPLETE = Target("complete")
_MOVES_ON = frozenset({TaskStatus.COMPLETED, TaskStatus.APPROVED, TaskStatus.SKIPPED})


def _run(rec: Recorder) -> None:
    if rec.template.machine is not None:
        run_machine(rec, _start_step, _failure_reason)
        return
    for _ in range(MAX_TRANSITIONS_PER_DECISION):
        state = rec.state
        if state is None or state.status is not WorkflowStatus.ACTIVE:
            return
        current = state.current
        if current is None:
            rec.emit(ev.InstanceCompleted)
            return
        if current.status is TaskStatus.PENDING:
            _start_step(rec, state.current_step)
            continue
        if current.status is TaskStatus.IN_PROGRESS:
            return
        target = next_target(rec.template, state)
        if target.kind == "complete":
            rec.emit(ev.InstanceCompleted)
            return
        if target.kind == "fail":
            rec.emit(ev.InstanceFailed, step=state.current_step, reason=_failure_reason(rec, state))
            return
        for skipped in range(state.current_step + 1, target.step):
            rec.emit(ev.StepSkipped, step=skipped,
                     reason=f"step {state.current_step} ({rec.template.step(state.current_step).spec.name}) "
                            f"went to step {target.step}")
        _start_step(rec, target.step)
    rec.emit(ev.InstanceFailed, step=rec.instance.current_step,
             reason=f"more than {MAX_TRANSITIONS_PER_DECISION} steps in one decision: a loop with no wait")


def _failure_reason(rec: Recorder, state: InstanceState) -> str:
    step = rec.template.step(state.current_step)
    step_state = state.steps[state.current_step - 1]
    label = f"step {step.spec.number} ({step.spec.name})"
    if step_state.status is TaskStatus.REJECTED:
        return f"{label} was rejected: {step_state.error}" if step_state.error else f"{label} was rejected"
    if step_state.status is TaskStatus.TIMED_OUT:
        return f"{label} timed out"
    if step_state.status is TaskStatus.FAILED:
        return f"{label} failed: {step_state.error}"
    if not kind_of(step.spec.type).falls_through:
        return f"{label} branched to fail"
    return f"{label} ended the instance"


# ---------------------------------------------------------------------------------- who is blocking?

def steps_meta(template: CompiledTemplate) -> list[dict[str, str]]:
    return [{"name": step.spec.name, "type": step.spec.type.value} for step in template.steps]


def blocking(state: InstanceState, template: CompiledTemplate) -> dict[str, Any]:
    """What the instance waits for (core/blocking.py), with the step names of its template."""
    return who_is_blocking(state, steps_meta(template))


def blocking_text(state: InstanceState, template: CompiledTemplate) -> str:
    return describe_blocking(blocking(state, template))
