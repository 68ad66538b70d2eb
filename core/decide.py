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
from core.approvers import describe
from core.effects import StepRequest
from core.payments import trigger_refusal
from core.recorder import Recorder
from core.state import InstanceState
from core.steps import action, approval, condition, external, notification, wait
from core.steps.failure import fail_attempt
from core.template import CompiledTemplate, Target
from core.types import Awaiting, StepType, TaskStatus, WorkflowStatus

MAX_TRANSITIONS_PER_DECISION = 1000

STARTERS: dict[StepType, Callable[..., None]] = {
    StepType.APPROVAL: approval.start,
    StepType.CONDITION: condition.start,
    StepType.ACTION: action.start,
    StepType.WAIT: wait.start,
    StepType.NOTIFICATION: notification.start,
    StepType.EXTERNAL: external.start,
}
RESULT_HANDLERS: dict[StepType, Callable[..., None]] = {
    StepType.ACTION: action.on_result,
    StepType.NOTIFICATION: notification.on_result,
    StepType.EXTERNAL: external.on_result,
}


@dataclass(frozen=True)
class Decision:
    state: InstanceState | None
    events: list[ev.Event] = field(default_factory=list)
    effects: list[StepRequest] = field(default_factory=list)
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
    actor = getattr(command, "actor", None)
    if actor is not None and actor.tenant_id and actor.tenant_id != state.tenant_id:
        return f"{actor.id} belongs to another tenant"
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


def _on_decision(rec: Recorder, command: cmd.RecordDecision) -> None:
    if rec.instance.status is not WorkflowStatus.ACTIVE:
        rec.reject(f"Instance is {rec.instance.status.value}; decisions wait until it is resumed")
        return
    if not _current_step_is(rec, command.step, "a decision"):
        return
    approval.on_decision(rec, rec.template.step(command.step), command)


def _on_result(rec: Recorder, command: cmd.ReportStepResult) -> None:
    if not _current_step_is(rec, command.step, "a result"):
        return
    step_state = rec.step_state(command.step)
    if command.attempt != step_state.attempt or step_state.awaiting is not Awaiting.HANDLER:
        rec.reject(f"Expected a result for step {command.step} attempt {step_state.attempt} "
                   f"({step_state.status.value}, awaiting {step_state.awaiting.value or 'nothing'}), but got "
                   f"attempt {command.attempt}")
        return
    step = rec.template.step(command.step)
    handler = RESULT_HANDLERS.get(step.spec.type)
    if handler is None:
        rec.reject(f"Step {command.step} is a {step.spec.type.value} step; it takes no handler results")
        return
    handler(rec, step, command)


def _on_escalate(rec: Recorder, command: cmd.EscalateApproval) -> None:
    if rec.instance.status is not WorkflowStatus.ACTIVE:
        rec.reject(f"Instance is {rec.instance.status.value}; escalations wait until it is resumed")
        return
    if not _current_step_is(rec, command.step, "an escalation"):
        return
    step = rec.template.step(command.step)
    if step.spec.type is not StepType.APPROVAL:
        rec.reject(f"Step {command.step} is a {step.spec.type.value} step; only approvals escalate")
        return
    approval.escalate_now(rec, step, command)


def _on_complete_external(rec: Recorder, command: cmd.CompleteExternal) -> None:
    if not _current_step_is(rec, command.step, "a completion callback"):
        return
    step = rec.template.step(command.step)
    step_state = rec.step_state(command.step)
    # A fast external system may call back before the handler's report of the call reaches us: for an
    # async step still awaiting its handler the callback proves the call was made, so it counts.
    early = step_state.awaiting is Awaiting.HANDLER and step.spec.type is StepType.EXTERNAL and external.is_async(step)
    if step.spec.type is not StepType.EXTERNAL or not (step_state.awaiting is Awaiting.CALLBACK or early):
        rec.reject(f"Expected step {command.step} to await an external callback, but it awaits "
                   f"{step_state.awaiting.value or 'nothing'}")
        return
    if command.status not in ("completed", "failed"):
        rec.reject(f"Expected status 'completed' or 'failed', but got {command.status!r}")
        return
    external.on_callback(rec, step, command)


def _on_timer(rec: Recorder, command: cmd.FireTimer) -> None:
    state = rec.instance
    timer = state.timer(command.timer_id)
    if timer is None:
        rec.reject(f"Timer {command.timer_id} is no longer armed")
        return
    if state.status is not WorkflowStatus.ACTIVE:
        rec.reject(f"Instance is {state.status.value}; timer {command.timer_id} fires after resume")
        return
    step = rec.template.step(timer.step)
    if timer.purpose == "retry":
        _start_step(rec, timer.step, retry=True)
    elif timer.purpose in ("approval_timeout", "review_timeout"):
        approval.on_timer(rec, step, timer)
    elif timer.purpose.startswith("wait_"):
        wait.on_timer(rec, step, timer)
    elif timer.purpose == "callback_timeout":
        external.on_timer(rec, step, timer)
    else:
        rec.reject(f"Timer {command.timer_id} has an unknown purpose {timer.purpose!r}")


def _on_advance(rec: Recorder, command: cmd.Advance) -> None:
    state = rec.instance
    if state.status is not WorkflowStatus.ACTIVE:
        rec.emit(ev.AdvanceChecked, actor=command.actor, blocking=f"instance is {state.status.value}")
        return
    current = state.current
    step = rec.template.step(state.current_step) if current else None
    if step is not None and step.spec.type is StepType.WAIT and current is not None \
            and current.status is TaskStatus.IN_PROGRESS and wait.ready(rec, step):
        wait.finish_early(rec, step)
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
    cmd.CompleteExternal: _on_complete_external,
    cmd.FireTimer: _on_timer,
    cmd.Advance: _on_advance,
    cmd.PauseInstance: _on_pause,
    cmd.ResumeInstance: _on_resume,
    cmd.CancelInstance: _on_cancel,
    cmd.EscalateApproval: _on_escalate,
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
    STARTERS[step.spec.type](rec, step)


def next_target(template: CompiledTemplate, state: InstanceState) -> Target:
    """Where a finished current step leads, derived from the step's outcome and its config."""
    number = state.current_step
    step = template.step(number)
    step_state = state.steps[number - 1]
    status = step_state.status
    if status is TaskStatus.COMPLETED and step.spec.type is StepType.CONDITION:
        branch = (step_state.output or {}).get("branch")
        return step.targets.get(branch, FAIL)
    if status in _MOVES_ON or (
            status is TaskStatus.TIMED_OUT and final_timeout_action(step.spec.config.get("on_timeout")) == "continue"):
        return Target("goto", number + 1) if number < template.step_count else COMPLETE
    if status is TaskStatus.REJECTED:
        return step.targets.get("on_reject", FAIL)
    return FAIL


FAIL = Target("fail")
COMPLETE = Target("complete")
_MOVES_ON = frozenset({TaskStatus.COMPLETED, TaskStatus.APPROVED, TaskStatus.SKIPPED})


def final_timeout_action(on_timeout: Any) -> str:
    """What a timeout finally does: `on_timeout` itself, or an escalation's `then` once escalations ran out."""
    if isinstance(on_timeout, dict):
        if on_timeout.get("action", "escalate") == "escalate":
            return str(on_timeout.get("then", "fail"))
        return str(on_timeout.get("action"))
    return str(on_timeout or "fail")


def _run(rec: Recorder) -> None:
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
    if step.spec.type is StepType.CONDITION:
        return f"{label} branched to fail"
    return f"{label} ended the instance"


# ---------------------------------------------------------------------------------- who is blocking?

def blocking(state: InstanceState, template: CompiledTemplate) -> dict[str, Any]:
    """What the instance waits for: the answer to "where is it, who is blocking?"."""
    if state.is_terminal:
        return {"status": state.status.value, "waiting_for": None}
    current = state.current
    if current is None:
        return {"status": state.status.value, "waiting_for": None}
    step = template.step(state.current_step)
    info: dict[str, Any] = {
        "status": state.status.value,
        "step": step.spec.number,
        "step_name": step.spec.name,
        "step_type": step.spec.type.value,
        "waiting_for": current.awaiting.value or None,
    }
    if current.awaiting in (Awaiting.APPROVAL, Awaiting.REVIEW):
        approvals = sum(1 for v in current.counted_votes if v.decision == "approve")
        info.update(approvers=current.approvers, approvals=approvals,
                    remaining=max(current.required - approvals, 0),
                    decided_by=[v.actor_id for v in current.votes])
    timers = [t for t in state.timers if t.step == step.spec.number]
    if timers:
        info["next_timer"] = {"purpose": min(timers, key=lambda t: t.fire_at).purpose,
                              "fire_at": min(t.fire_at for t in timers)}
    return info


def blocking_text(state: InstanceState, template: CompiledTemplate) -> str:
    info = blocking(state, template)
    if info.get("waiting_for") is None:
        return f"instance is {info['status']}"
    text = f"step {info['step']} ({info['step_name']}) waits for {info['waiting_for']}"
    if "remaining" in info:
        text += f": {info['remaining']} more approval(s) from {describe(info['approvers'])}"
    return text
