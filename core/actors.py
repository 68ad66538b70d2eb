"""Who acts on an instance. The gateway resolves a bearer token into an Actor; the core judges it.

An agent's approval permission for the instance's template travels inside the Actor as a snapshot
(`approval_limits`), so the engine decides deterministically from the command alone and a later change of
permissions never reinterprets a decision already in the log.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.types import ActorKind


@dataclass(frozen=True, kw_only=True)
class ApprovalLimits:
    """What an actor may approve: `None` fields mean "no limit"; an empty tuple means "any".

    - `currencies`: ISO codes the trigger's `currency` must be one of (a trigger without one is refused).
    - `hours`: UTC windows `"HH:MM-HH:MM"` (end exclusive; `22:00-06:00` wraps midnight), judged against the
      command's own time (`issued_at`), never the engine's clock, so a replay decides the same.
    - `counts_toward_quorum`: false makes the agent's approval an `AgentRecommendation` only (the step
      stays open for the humans).
    - `escalate_above_limit`: above `max_amount` the agent's decision becomes a recommendation for the
      human approvers (and the command is still refused, so the agent learns it did not decide).
    - `daily_budget`: enforced across instances by the gateway (a per-agent per-day row in PostgreSQL); the
      core, which sees one instance at a time, only carries it for the audit trail.
    """

    max_amount: float | None = None
    step_names: tuple[str, ...] = ()
    currencies: tuple[str, ...] = ()
    hours: tuple[str, ...] = ()
    counts_toward_quorum: bool = True
    escalate_above_limit: bool = True
    daily_budget: float | None = None


@dataclass(frozen=True, kw_only=True)
class Actor:
    id: str
    kind: ActorKind = ActorKind.HUMAN
    roles: tuple[str, ...] = ()
    tenant_id: str = ""
    display_name: str = ""
    approval_limits: ApprovalLimits | None = None


SYSTEM = Actor(id="flowline", kind=ActorKind.SYSTEM, display_name="Flowline engine")
