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

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from core import events as ev
from core.approvers import bounds_refusal, describe, escalates_to_humans, matches_spec, refusal, spec_list
from core.commands import EscalateApproval, RecordDecision
from core.problems import Problems, check_approvers, positive_number
from core.quorum import APPROVED, REJECTED, check_quorum, committee_members, parse_level, required_approvals
from core.recorder import Recorder
from core.state import Timer
from core.steps.kind import APPROVERS, HOURS, TARGET, StepKind, config_schema, positive
from core.timers import OnTimeout, TimerPurpose, hours_to_ms
from core.types import ActorKind, ApprovalLevel, Awaiting, StepType

if TYPE_CHECKING:
    from core.template import CompiledStep

ESCALATION_ROLE = "workflow_admin"
SYSTEM_APPROVER = "flowline"
ON_TIMEOUT_CHOICES = ("fail", "auto_approve", "auto_reject", "escalate", "continue")
THEN_CHOICES = ("fail", "auto_approve", "auto_reject", "continue")
REVIEW_TIMEOUT = OnTimeout(action="auto_reject")  # a human review nobody decides rejects the failed step

CONFIG_SCHEMA = config_schema(
    StepType.APPROVAL,
    "Humans or agents sign off, with quorum, timeouts and escalation.",
    {
        "approvers": {**APPROVERS, "description": "who may decide (required unless level is AUTO)"},
        "level": {"enum": [level.value for level in ApprovalLevel], "default": "SINGLE",
                  "description": "SINGLE: one approval; DUAL: two distinct approvers; COMMITTEE: quorum of the "
                                 "committee; AUTO: approved at once"},
        "quorum": {"type": "integer", "minimum": 1,
                   "description": "COMMITTEE only: approvals needed (default: a majority of the named members, "
                                  "else 2)"},
        "timeout_hours": positive("how long the approvers have; then on_timeout applies", maximum=24 * 365),
        "on_timeout": {
            "description": "what a timeout does (needs timeout_hours)",
            "default": "fail",
            "oneOf": [
                {"enum": list(ON_TIMEOUT_CHOICES)},
                {"type": "object", "description": "escalate to the template's target",
                 "properties": {"action": {"enum": list(ON_TIMEOUT_CHOICES), "default": "escalate"},
                                "approvers": APPROVERS,
                                "timeout_hours": HOURS,
                                "max_escalations": {"type": "integer", "minimum": 0, "default": 1},
                                "then": {"enum": list(THEN_CHOICES), "default": "fail",
                                         "description": "what the last timeout does once escalations ran out"}}},
            ],
            "examples": ["auto_reject", {"action": "escalate", "approvers": {"type": "role", "value": "cfo"},
                                         "timeout_hours": 24, "then": "fail"}],
        },
        "escalate_to": {**APPROVERS, "description": "where a manual escalation goes (when on_timeout names "
                                                     "no approvers)"},
        "on_reject": {**TARGET, "default": "fail", "description": "where a rejection leads"},
        "description": {"type": "string", "description": "shown to the approvers"},
    },
    example={"approvers": {"type": "role", "value": "cfo"}, "level": "SINGLE", "timeout_hours": 48,
             "on_timeout": "auto_reject"},
)


def validate(problems: Problems, cp: str, config: Mapping[str, Any], actions: set[str]) -> None:
    level = parse_level(config.get("level"))
    if level is None:
        problems.add(f"{cp}/level", f"level {config.get('level')!r} is not one of SINGLE, DUAL, COMMITTEE, AUTO")
    if level is not ApprovalLevel.AUTO:
        if "approvers" not in config:
            problems.add(f"{cp}/approvers", "an approval step needs approvers, e.g. {'type': 'role', 'value': 'cfo'}")
        else:
            check_approvers(problems, f"{cp}/approvers", config["approvers"])
    if level is ApprovalLevel.COMMITTEE:
        quorum = config.get("quorum")
        members = committee_members(config.get("approvers"))
        if quorum is not None and (not isinstance(quorum, int) or isinstance(quorum, bool) or quorum < 1):
            problems.add(f"{cp}/quorum", "quorum must be a whole number of approvals, at least 1")
        elif isinstance(quorum, int) and members and quorum > members:
            problems.add(f"{cp}/quorum", f"quorum {quorum} is more than the {members} committee members")
    if level is ApprovalLevel.DUAL and 0 < committee_members(config.get("approvers")) < 2:
        problems.add(f"{cp}/approvers", "DUAL approval needs at least two possible approvers")
    positive_number(problems, f"{cp}/timeout_hours", config.get("timeout_hours"), maximum=24 * 365)
    raw = config.get("on_timeout")
    if raw is not None:
        on_timeout = OnTimeout.parse(raw)
        action = on_timeout.action if isinstance(raw, Mapping | str) else raw  # not a word: refuse it as given
        if action not in ON_TIMEOUT_CHOICES:
            problems.add(f"{cp}/on_timeout", f"on_timeout {action!r} is not one of {', '.join(ON_TIMEOUT_CHOICES)}")
        if "timeout_hours" not in config:
            problems.add(f"{cp}/on_timeout", "on_timeout needs timeout_hours to know when to act")
        if isinstance(raw, Mapping):
            if "approvers" in raw:
                check_approvers(problems, f"{cp}/on_timeout/approvers", raw["approvers"])
            positive_number(problems, f"{cp}/on_timeout/timeout_hours", raw.get("timeout_hours"))
            if on_timeout.then not in THEN_CHOICES:
                problems.add(f"{cp}/on_timeout/then",
                             f"then {on_timeout.then!r} is not fail, auto_approve, auto_reject or continue")
    if "escalate_to" in config:
        check_approvers(problems, f"{cp}/escalate_to", config["escalate_to"])


def level_of(step: CompiledStep) -> ApprovalLevel:
    if step.spec.type is not StepType.APPROVAL:
        return ApprovalLevel.SINGLE  # human review of a failed external step
    return parse_level(step.spec.config.get("level")) or ApprovalLevel.SINGLE


def start(rec: Recorder, step: CompiledStep) -> None:
    config = step.spec.config
    number = step.spec.number
    level = level_of(step)
    if level is ApprovalLevel.AUTO:
        rec.emit(ev.StepApproved, step=number, approved_by=(SYSTEM_APPROVER,), automatic=True)
        return
    required = required_approvals(level, config)
    timeout = hours_to_ms(config.get("timeout_hours"))
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
    if cmd.actor.id in [note.actor_id for note in state.recommendations]:
        rec.reject(f"{cmd.actor.id} already recommended on step {number}; the human approvers decide")
        return
    trigger = rec.instance.trigger if isinstance(rec.instance.trigger, dict) else {}
    amount = trigger.get("amount")
    why_not = refusal(cmd.actor, state.approvers, step_name=step.spec.name, amount=amount,
                      initiator=rec.instance.initiated_by,
                      separation_of_duties=rec.template.template.separation_of_duties)
    bounds = bounds_refusal(cmd.actor, currency=trigger.get("currency"), at=cmd.issued_at or rec.now)
    if bounds and (why_not is None or escalates_to_humans(cmd.actor, why_not, amount)):
        why_not = bounds  # currency and hours refuse outright, even above the limit
    elif why_not and escalates_to_humans(cmd.actor, why_not, amount):
        _recommend(rec, number, cmd, refusal=why_not)
        rec.reject(f"{why_not}; the step stays open and the human approvers see {cmd.actor.id}'s "
                   "recommendation")
        return
    if why_not:
        rec.reject(why_not)
        return
    limits = cmd.actor.approval_limits
    if cmd.decision == "approve" and limits is not None and not limits.counts_toward_quorum:
        _recommend(rec, number, cmd, refusal="")
        return
    rec.emit(ev.DecisionRecorded, step=number, actor=cmd.actor, decision=cmd.decision, reasoning=cmd.reasoning,
             signature=cmd.signature, signature_status=cmd.signature_status, agent_context=cmd.agent_context)
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


def _recommend(rec: Recorder, number: int, cmd: RecordDecision, *, refusal: str) -> None:
    rec.emit(ev.AgentRecommendation, step=number, actor=cmd.actor, decision=cmd.decision, reasoning=cmd.reasoning,
             refusal=refusal, signature_status=cmd.signature_status, agent_context=cmd.agent_context)


def on_timer(rec: Recorder, step: CompiledStep, timer: Timer) -> None:
    """The approval (or human review) deadline passed: escalate while allowed, else apply `on_timeout`."""
    number = step.spec.number
    state = rec.step_state(number)
    on_timeout = REVIEW_TIMEOUT if state.awaiting is Awaiting.REVIEW else step.on_timeout
    action = on_timeout.action
    if action == "escalate":
        if state.escalation < on_timeout.max_escalations:
            _escalate(rec, step, timer, on_timeout)
            return
        action = on_timeout.then
    rec.emit(ev.StepTimedOut, step=number, attempt=state.attempt, action=action, timer_id=timer.timer_id)
    if action == "auto_approve":
        rec.emit(ev.StepApproved, step=number, approved_by=(SYSTEM_APPROVER,), automatic=True)
    elif action == "auto_reject":
        rec.emit(ev.StepRejected, step=number, rejected_by=(SYSTEM_APPROVER,), automatic=True,
                 reason="no decision before the deadline")


def escalation_target(step: CompiledStep) -> Any:
    """Where the template says this step escalates: `on_timeout.approvers`, else `escalate_to`, else None."""
    return step.on_timeout.approvers or step.spec.config.get("escalate_to") or None


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
    allowed_escalations = step.on_timeout.max_escalations
    if state.escalation >= allowed_escalations:
        rec.reject(f"Step {number} was escalated {state.escalation} time(s); its template allows "
                   f"{allowed_escalations}")
        return
    timeout = hours_to_ms(cmd.timeout_hours)
    deadline = rec.now + timeout if timeout else 0
    escalation = state.escalation + 1
    rec.emit(ev.ApprovalEscalated, step=number, approvers=target, deadline=deadline, escalation=escalation,
             resets_votes=True)
    rec.request(step, {"approvers": target, "level": level_of(step).value, "required": state.required,
                       "deadline": deadline, "escalation": escalation, "escalated_from": state.approvers,
                       "reason": cmd.reason}, key_suffix=f":escalation-{escalation}")


def _escalate(rec: Recorder, step: CompiledStep, timer: Timer, on_timeout: OnTimeout) -> None:
    number = step.spec.number
    state = rec.step_state(number)
    approvers = escalation_target(step) or state.approvers
    timeout = hours_to_ms(on_timeout.timeout_hours or step.spec.config.get("timeout_hours"))
    deadline = rec.now + timeout if timeout else 0
    escalation = state.escalation + 1
    rec.emit(ev.StepTimedOut, step=number, attempt=state.attempt, action="escalate", timer_id=timer.timer_id)
    rec.emit(ev.ApprovalEscalated, step=number, approvers=approvers, deadline=deadline, escalation=escalation,
             resets_votes=True)
    rec.request(step, {"approvers": approvers, "level": level_of(step).value, "required": state.required,
                       "deadline": deadline, "escalation": escalation, "escalated_from": state.approvers},
                key_suffix=f":escalation-{escalation}")


KIND = StepKind(
    type=StepType.APPROVAL,
    summary="humans or agents sign off, with quorum, timeouts and escalation",
    config_schema=CONFIG_SCHEMA,
    validate=validate,
    start=start,
    on_decision=on_decision,
    on_escalate=escalate_now,
    on_timer=on_timer,
    timers=(TimerPurpose.APPROVAL_TIMEOUT, TimerPurpose.REVIEW_TIMEOUT),
    targets={"on_reject": "fail"},
    handler="approval",
)
