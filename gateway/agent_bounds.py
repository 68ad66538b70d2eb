"""The gateway's part of bounded agents (story 29.12): what needs the database or the clock.

- `agent_signature` (of a decision, or of a requested transition): checked against the agent's registered
  Ed25519 key (core/agent_signing.py computes;
  this module fetches the key and reads the clock). Invalid -> 422 problem, never sent to the engine;
  otherwise the command carries `signature_status` verified / absent into the audit trail.
- `daily_budget`: the engine sees one instance at a time, so the cross-instance sum lives in PostgreSQL
  (`agent_daily_budget_usage`). `reserve` adds the amount with one atomic `UPDATE ... WHERE used + amount <=
  budget` (concurrent approvals serialise on the row; the loser's WHERE fails), `release` gives it back when
  the engine refused the decision. A decision whose outcome the gateway did not wait for keeps its
  reservation: the budget may be under-used, never over-spent.

Every per-decision bound (max_amount, step_names, currencies, hours, counts_toward_quorum, escalation) is
the core's (core/approvers.py); nothing here re-derives them.
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime
from typing import Any

from core.agent_signing import ABSENT, VERIFIED, canonical_decision, canonical_transition, signature_refusal
from gateway.problems import Problem


async def signature_status(pool, principal_id: str, body: dict[str, Any], *, instance_id: str, step: int,
                           attempt: int, decision: str) -> str:
    """A decision's signature: verified or absent; raises a 422 problem for an invalid or stale signature."""
    return await _checked(pool, principal_id, body, lambda signed_at: canonical_decision(
        instance_id=instance_id, step=step, attempt=attempt, decision=decision,
        reasoning=body.get("reasoning", ""), timestamp=signed_at))


async def transition_signature_status(pool, principal_id: str, body: dict[str, Any], *, instance_id: str,
                                      from_state: str, to_state: str) -> str:
    """A requested transition's signature (`core.agent_signing.canonical_transition`), checked the same way."""
    return await _checked(pool, principal_id, body, lambda signed_at: canonical_transition(
        instance_id=instance_id, from_state=from_state, to_state=to_state, reason=body.get("reason", ""),
        timestamp=signed_at))


async def _checked(pool, principal_id: str, body: dict[str, Any], message_at) -> str:
    signature = body.get("agent_signature") or ""
    if not signature:
        return ABSENT
    public_key = await pool.fetchval("SELECT public_key FROM principals WHERE id = $1", principal_id)
    signed_at = body.get("signed_at")
    message = message_at(signed_at or 0)
    why_not = signature_refusal(public_key=public_key, signature=signature, message=message,
                                timestamp=signed_at, now=int(time.time()))
    if why_not:
        raise Problem(422, why_not, title="Invalid agent signature",
                      pointer="/signed_at" if "signed_at" in why_not else "/agent_signature")
    return VERIFIED


def today() -> date:
    return datetime.now(UTC).date()


async def reserve(pool, agent_id: str, day: date, amount: float, budget: float) -> None:
    """Reserve `amount` of the agent's `budget` for `day`, atomically; 403 problem if it does not fit."""
    async with pool.acquire() as conn:
        await conn.execute("INSERT INTO agent_daily_budget_usage (agent_id, day) VALUES ($1, $2) "
                           "ON CONFLICT DO NOTHING", agent_id, day)
        used = await conn.fetchval(
            "UPDATE agent_daily_budget_usage SET used = used + $3 WHERE agent_id = $1 AND day = $2 "
            "AND used + $3 <= $4 RETURNING used", agent_id, day, amount, budget)
        if used is None:
            spent = await conn.fetchval("SELECT used FROM agent_daily_budget_usage WHERE agent_id = $1 AND "
                                        "day = $2", agent_id, day)
            raise Problem(403, f"amount {amount:g} would exceed {agent_id}'s daily budget of {budget:g} "
                               f"({spent:g} already approved on {day.isoformat()} UTC); a human must decide",
                          title="Agent daily budget exhausted")


async def release(pool, agent_id: str, day: date, amount: float) -> None:
    await pool.execute("UPDATE agent_daily_budget_usage SET used = greatest(used - $3, 0) WHERE agent_id = $1 "
                       "AND day = $2", agent_id, day, amount)
