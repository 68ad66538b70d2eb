"""Who may decide an approval step, judged from the command's Actor and the step's approver spec.

Approver specs: `{"type": "role", "value": "cfo"}`, `{"type": "user", "value": "u_1"}` (or a list of
ids), `{"type": "agent", "value": "agent_456"}`, or a list of such specs (any of them matches). An agent
with an approval permission for the template (`actor.approval_limits`, resolved by the gateway) may also
decide role-based steps, within its `step_names` and `max_amount` (story 29.12). Whoever started the
instance may not approve it (separation of duties), unless the template's `settings.separation_of_duties`
is false.
"""

from __future__ import annotations

from typing import Any

from core.actors import Actor
from core.types import ActorKind

SPEC_TYPES = ("role", "user", "agent")


def spec_list(approvers: Any) -> list[dict[str, Any]]:
    if isinstance(approvers, list):
        return [s for s in approvers if isinstance(s, dict)]
    if isinstance(approvers, dict):
        return [approvers]
    return []


def _values(spec: dict[str, Any]) -> list[str]:
    value = spec.get("value")
    if isinstance(value, list):
        return [str(v) for v in value if v is not None]
    return [str(value)] if value is not None else []


def values_of(approvers: Any, kind: str) -> list[str]:
    """Every role (`kind="role"`), user id or agent id the spec names: the read model's approver columns."""
    return [value for spec in spec_list(approvers) if spec.get("type") == kind for value in _values(spec)]


def matches_spec(actor: Actor, approvers: Any) -> bool:
    for spec in spec_list(approvers):
        kind, values = spec.get("type"), _values(spec)
        if kind == "role" and set(values) & set(actor.roles):
            return True
        if kind == "user" and actor.kind is ActorKind.HUMAN and actor.id in values:
            return True
        if kind == "agent" and actor.kind is ActorKind.AGENT and actor.id in values:
            return True
    return False


def refusal(actor: Actor, approvers: Any, *, step_name: str, amount: Any, initiator: Actor,
            separation_of_duties: bool = True) -> str | None:
    """None if the actor may decide; otherwise a sentence saying why not."""
    if actor.kind is ActorKind.SYSTEM:
        return "the system cannot vote on an approval"
    if separation_of_duties and actor.id == initiator.id and initiator.kind is not ActorKind.SYSTEM:
        return f"{actor.id} started this instance and cannot approve it"
    limits = actor.approval_limits
    agent_permitted = actor.kind is ActorKind.AGENT and limits is not None
    if not matches_spec(actor, approvers) and not agent_permitted:
        return f"{actor.id} is not among the approvers ({describe(approvers)})"
    if limits is not None:
        if limits.step_names and step_name not in limits.step_names:
            return f"{actor.id} may only decide steps {', '.join(limits.step_names)}, not {step_name!r}"
        return above_limit(actor, amount)  # last: a refusal equal to this one may escalate (escalates_to_humans)
    return None


def above_limit(actor: Actor, amount: Any) -> str | None:
    """The agent's per-decision `max_amount` refusal, or None."""
    limits = actor.approval_limits
    if limits is None or limits.max_amount is None:
        return None
    if not isinstance(amount, int | float):
        return f"{actor.id} has a max_amount limit but the trigger has no numeric amount"
    if amount > limits.max_amount:
        return f"amount {amount:g} is above {actor.id}'s approval limit of {limits.max_amount:g}"
    return None


def escalates_to_humans(actor: Actor, why_not: str, amount: Any) -> bool:
    """Whether a refusal is the agent's amount limit and the agent escalates above it (story 29.12 bounds):
    its decision is then recorded as a recommendation for the human approvers instead of vanishing."""
    limits = actor.approval_limits
    return (actor.kind is ActorKind.AGENT and limits is not None and limits.escalate_above_limit
            and isinstance(amount, int | float) and why_not == above_limit(actor, amount))


def parse_window(window: str) -> tuple[int, int]:
    """`"HH:MM-HH:MM"` (UTC) -> (start, end) in minutes of the day; ValueError if it is not one."""
    try:
        start, end = (part.strip() for part in window.split("-"))
        minutes = []
        for part in (start, end):
            hours, mins = part.split(":")
            if not (len(hours) == 2 and len(mins) == 2 and 0 <= int(hours) <= 24 and 0 <= int(mins) < 60):
                raise ValueError
            minutes.append(int(hours) * 60 + int(mins))
    except ValueError:
        raise ValueError(f"allowed hours must look like 'HH:MM-HH:MM' (UTC), not {window!r}") from None
    if minutes[0] == minutes[1] or max(minutes) > 24 * 60:
        raise ValueError(f"allowed hours {window!r} must be a non-empty window within 00:00-24:00")
    return minutes[0], minutes[1]


def bounds_refusal(actor: Actor, *, currency: Any, at: int) -> str | None:
    """The agent's currency and hours bounds for a decision made at `at` (epoch ms, the command's time)."""
    limits = actor.approval_limits
    if limits is None:
        return None
    if limits.currencies and currency not in limits.currencies:
        shown = currency if currency else "no currency"
        return f"{actor.id} may only decide in {', '.join(limits.currencies)}, not {shown}"
    if limits.hours:
        minute = (at // 60_000) % (24 * 60)
        for window in limits.hours:
            start, end = parse_window(window)
            if (start <= minute < end) if start < end else (minute >= start or minute < end):
                return None
        return (f"{actor.id} may only decide within {', '.join(limits.hours)} UTC, not at "
                f"{minute // 60:02d}:{minute % 60:02d}")
    return None


def transition_refusal(actor: Actor, roles: tuple[str, ...], *, amount: Any, currency: Any, at: int,
                       initiator: Actor, separation_of_duties: bool = True) -> str | None:
    """Who may request a role-restricted state-machine transition (core/machine_run.py `why_not`), or why not.

    The same rules for people and agents: one of the transition's `roles`, and not whoever started the
    instance (separation of duties, as for approvals: a role-restricted transition is a decision). An agent
    acts only within its approval permission for the template (`approval_limits`): `max_amount` against the
    trigger's amount, `currencies` and UTC `hours` (`step_names` name steps, not transitions). An agent with
    no permission there may still take the transitions that name no role, as anyone may.
    """
    if not roles or actor.kind is ActorKind.SYSTEM:
        return None
    if not set(roles) & set(actor.roles):
        return f"role missing: needs one of {', '.join(roles)}"
    if separation_of_duties and actor.id == initiator.id and initiator.kind is not ActorKind.SYSTEM:
        return f"{actor.id} started this instance and cannot take a role-restricted transition on it"
    if actor.kind is ActorKind.AGENT:
        if actor.approval_limits is None:
            return (f"{actor.id} has no approval permission on this template (an agent takes role-restricted "
                    "transitions within its can_approve bounds)")
        return above_limit(actor, amount) or bounds_refusal(actor, currency=currency, at=at)
    return None


def may_decide(actor: Actor, approvers: Any, *, decided_by: Any, step_name: str, amount: Any, initiator: Actor,
               separation_of_duties: bool = True, currency: Any = None, at: int | None = None) -> bool:
    """Whether an approval waiting for `approvers` waits for `actor` now: eligible (`refusal`), within its
    currency and hours bounds at `at` (`bounds_refusal`; skipped when `at` is None), and not yet voted.

    The engine judges each decision by `refusal` and `bounds_refusal`; the gateway's "pending for me" and
    "blocked on me" SQL (gateway/instances.py `approver_predicate`) must answer the same, which a parity test
    checks (tests/integration/gateway/test_pending_parity.py).
    """
    return actor.id not in set(decided_by or ()) and refusal(
        actor, approvers, step_name=step_name, amount=amount, initiator=initiator,
        separation_of_duties=separation_of_duties) is None and (
        at is None or bounds_refusal(actor, currency=currency, at=at) is None)


def describe(approvers: Any) -> str:
    parts = []
    for spec in spec_list(approvers):
        parts.append(f"{spec.get('type')} {'/'.join(_values(spec))}")
    return ", ".join(parts) or "nobody"
