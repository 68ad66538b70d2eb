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
        if limits.max_amount is not None:
            if not isinstance(amount, int | float):
                return f"{actor.id} has a max_amount limit but the trigger has no numeric amount"
            if amount > limits.max_amount:
                return f"amount {amount:g} is above {actor.id}'s approval limit of {limits.max_amount:g}"
    return None


def may_decide(actor: Actor, approvers: Any, *, decided_by: Any, step_name: str, amount: Any, initiator: Actor,
               separation_of_duties: bool = True) -> bool:
    """Whether an approval waiting for `approvers` waits for `actor` now: eligible (`refusal`) and not yet voted.

    The engine judges each decision by `refusal`; the gateway's "pending for me" and "blocked on me" SQL
    (gateway/instances.py `approver_predicate`) must answer the same, which a parity test checks.
    """
    return actor.id not in set(decided_by or ()) and refusal(
        actor, approvers, step_name=step_name, amount=amount, initiator=initiator,
        separation_of_duties=separation_of_duties) is None


def describe(approvers: Any) -> str:
    parts = []
    for spec in spec_list(approvers):
        parts.append(f"{spec.get('type')} {'/'.join(_values(spec))}")
    return ", ".join(parts) or "nobody"
