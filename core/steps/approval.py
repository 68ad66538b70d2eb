"""Approval step: humans or agents sign off, with quorum, timeouts and escalation (stories 29.3, 29.8).

Start: AUTO approves at once; otherwise the step records who may decide and how many must agree, arms
the `timeout_hours` timer, and asks the approval handler to notify the approvers. Decisions arrive as
`RecordDecision` commands; each is judged here (eligible approver, not the requester, not twice, agent
limits) and counted (core/quorum.py). A timeout applies `on_timeout`: `fail` (default), `auto_approve`,
`auto_reject`, `continue`, or `escalate` (to `{"action": "escalate", "approvers": ..., "timeout_hours":
..., "then": "fail"}`), which re-arms the timer once per allowed escalation.

Maker-checker across escalations (docs/security.md): an escalation, on timeout or by hand, goes only to
the template's target; the votes cast before it stay on record but stop counting, so the escalated
approvers make the whole quorum of the step's level; nobody votes twice on one step, before or after.

The same decision path serves an external step in `human_review` after it failed.
Next: approved -> continue; rejected -> `on_reject` (default `fail`); timed out -> fail or continue.
"""

from __future__ import annotations

from typing import Any

from core import events as ev
from core.approvers import describe, matches_spec, refusal, spec_list
from core.commands import EscalateApproval, RecordDecision
from core.quorum import APPROVED, REJECTED, check_quorum, committee_members, parse_level, required_approvals
from core.recorder import Recorder
from core.state import Timer
from core.template import CompiledStep
from core.types import ActorKind, ApprovalLevel, Awaiting, StepType

DEFAULT_MAX_ESCALATIONS = 1
ESCALATION_ROLE = "workflow_admin"
SYSTEM_APPROVER = "flowline"


def level_of(step: CompiledStep) -> ApprovalLevel:
    if step.spec.type is not StepType.APPROVAL:
        return ApprovalLevel.SINGLE  # human review of a failed external step
    return parse_level(step.spec.config.get("level")) or ApprovalLevel.SINGLE


def _hours_to_ms(hours: Any) -> int:
    return int(float(hours) * 3_600_000) if hours else 0


def start(rec: Recorder, step: CompiledStep) -> None:
    config = step.spec.config
    number = step.spec.number
    level = level_of(step)
    if level is ApprovalLevel.AUTO:
        rec.emit(ev.StepApproved, step=number, approved_by=(SYSTEM_APPROVER,), automatic=True)
        return
    required = required_approvals(level, config)
    timeout = _hours_to_ms(config.get("timeout_hours"))
    deadline = rec.now + timeout if timeout else 0
    attempt = rec.step_state(number).attempt
    rec.emit(ev.ApprovalRequested, step=number, attempt=attempt, approvers=config.get("approvers"),
             level=level.value, required=required, deadline=deadline)
    rec.request(step, {"approvers": config.get("approvers"), "level": level.value, "required": required,
                       "deadline": deadline, "escalation": 0, "description": config.get("description", "")})


def on_decision(rec: Recorder, step: CompiledStep, cmd: RecordDecision) -> None:
    number = step.spec.number
    state = rec.step_state(number)
    if state.awaiting not in (Awaiting.APPROVAL, Awaiting.REVIEW):
        rec.reject(f"Expected step {number} to await a decision, but it awaits {state.awaiting.value or 'nothing'}")
        return
    if cmd.decision not in ("approve", "reject"):
        rec.reject(f"Expected decision 'approve' or 'reject', but got {cmd.decision!r}")
        return
    if cmd.actor.id in [vote.actor_id for vote in state.votes]:
        rec.reject(f"{cmd.actor.id} already decided step {number}")
        return
    trigger = rec.instance.trigger if isinstance(rec.instance.trigger, dict) else {}
    why_not = refusal(cmd.actor, state.approvers, step_name=step.spec.name, amount=trigger.get("amount"),
                      initiator=rec.instance.initiated_by,
                      separation_of_duties=rec.template.template.separation_of_duties)
    if why_not:
        rec.reject(why_not)
        return
    rec.emit(ev.DecisionRecorded, step=number, actor=cmd.actor, decision=cmd.decision, reasoning=cmd.reasoning,
             signature=cmd.signature)
    votes = rec.step_state(number).counted_votes
    level = level_of(step)
    outcome = check_quorum(level, state.required, committee_members(state.approvers), [v.decision for v in votes])
    if outcome == APPROVED:
        approved_by = tuple([v.actor_id for v in votes if v.decision == "approve"])
        rec.emit(ev.StepApproved, step=number, approved_by=approved_by)
    elif outcome == REJECTED:
        rejecting = [v for v in votes if v.decision == "reject"]
        reason = "; ".join(f"{v.actor_id}: {v.reasoning}" if v.reasoning else v.actor_id for v in rejecting)
        rec.emit(ev.StepRejected, step=number, rejected_by=tuple(v.actor_id for v in rejecting),
                 reason=f"rejected by {reason}")


def on_timer(rec: Recorder, step: CompiledStep, timer: Timer) -> None:
    number = step.spec.number
    state = rec.step_state(number)
    raw = step.spec.config.get("on_timeout", "fail") if step.spec.type is StepType.APPROVAL else "fail"
    if state.awaiting is Awaiting.REVIEW:
        raw = "auto_reject"
    action = raw.get("action", "escalate") if isinstance(raw, dict) else str(raw)
    if action == "escalate":
        options = raw if isinstance(raw, dict) else {}
        allowed = int(options.get("max_escalations", DEFAULT_MAX_ESCALATIONS))
        if state.escalation < allowed:
            _escalate(rec, step, timer, options)
            return
        action = str(options.get("then", "fail"))
    rec.emit(ev.StepTimedOut, step=number, attempt=state.attempt, action=action, timer_id=timer.timer_id)
    if action == "auto_approve":
        rec.emit(ev.StepApproved, step=number, approved_by=(SYSTEM_APPROVER,), automatic=True)
    elif action == "auto_reject":
        rec.emit(ev.StepRejected, step=number, rejected_by=(SYSTEM_APPROVER,), automatic=True,
                 reason="no decision before the deadline")


def escalation_target(step: CompiledStep) -> Any:
    """Where the template says this step escalates: `on_timeout.approvers`, else `escalate_to`, else None."""
    on_timeout = step.spec.config.get("on_timeout")
    if isinstance(on_timeout, dict) and on_timeout.get("approvers"):
        return on_timeout["approvers"]
    return step.spec.config.get("escalate_to") or None


def escalate_now(rec: Recorder, step: CompiledStep, cmd: EscalateApproval) -> None:
    """A manual escalation: the step's approvers or a workflow admin hand the decision on.

    Maker-checker (docs/security.md): the target is the template's (`escalation_target`), never the
    caller's choice (a caller may name it, and must then name exactly it); an approver who already voted
    may not escalate; the escalated approvers must make the whole quorum again (`resets_votes`).
    """
    number = step.spec.number
    state = rec.step_state(number)
    if state.awaiting is not Awaiting.APPROVAL:
        rec.reject(f"Expected step {number} to await an approval, but it awaits {state.awaiting.value or 'nothing'}")
        return
    target = escalation_target(step)
    if target is None:
        rec.reject(f"Step {number} names no escalation target (on_timeout.approvers or escalate_to); an "
                   "escalation goes only where the template says")
        return
    if spec_list(cmd.approvers) and spec_list(cmd.approvers) != spec_list(target):
        rec.reject(f"Step {number} escalates to {describe(target)} (the template's target), not to "
                   f"{describe(cmd.approvers)}")
        return
    allowed = matches_spec(cmd.actor, state.approvers) or ESCALATION_ROLE in cmd.actor.roles
    if cmd.actor.kind is not ActorKind.SYSTEM and not allowed:
        rec.reject(f"{cmd.actor.id} may not escalate step {number}: only its approvers or a {ESCALATION_ROLE}")
        return
    if cmd.actor.id in [vote.actor_id for vote in state.votes]:
        rec.reject(f"{cmd.actor.id} already voted on step {number} and may not escalate it")
        return
    on_timeout = step.spec.config.get("on_timeout")
    options = on_timeout if isinstance(on_timeout, dict) else {}
    allowed_escalations = int(options.get("max_escalations", DEFAULT_MAX_ESCALATIONS))
    if state.escalation >= allowed_escalations:
        rec.reject(f"Step {number} was escalated {state.escalation} time(s); its template allows "
                   f"{allowed_escalations}")
        return
    timeout = _hours_to_ms(cmd.timeout_hours)
    deadline = rec.now + timeout if timeout else 0
    escalation = state.escalation + 1
    rec.emit(ev.ApprovalEscalated, step=number, approvers=target, deadline=deadline, escalation=escalation,
             resets_votes=True)
    rec.request(step, {"approvers": target, "level": level_of(step).value, "required": state.required,
                       "deadline": deadline, "escalation": escalation, "escalated_from": state.approvers,
                       "reason": cmd.reason}, key_suffix=f":escalation-{escalation}")


def _escalate(rec: Recorder, step: CompiledStep, timer: Timer, options: dict[str, Any]) -> None:
    number = step.spec.number
    state = rec.step_state(number)
    approvers = escalation_target(step) or state.approvers
    timeout = _hours_to_ms(options.get("timeout_hours") or step.spec.config.get("timeout_hours"))
    deadline = rec.now + timeout if timeout else 0
    escalation = state.escalation + 1
    rec.emit(ev.StepTimedOut, step=number, attempt=state.attempt, action="escalate", timer_id=timer.timer_id)
    rec.emit(ev.ApprovalEscalated, step=number, approvers=approvers, deadline=deadline, escalation=escalation,
             resets_votes=True)
    rec.request(step, {"approvers": approvers, "level": level_of(step).value, "required": state.required,
                       "deadline": deadline, "escalation": escalation, "escalated_from": state.approvers},
                key_suffix=f":escalation-{escalation}")
