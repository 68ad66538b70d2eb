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
    """What an actor may approve: `None` fields mean "no limit"; an empty `step_names` means any step."""

    max_amount: float | None = None
    step_names: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Actor:
    id: str
    kind: ActorKind = ActorKind.HUMAN
    roles: tuple[str, ...] = ()
    tenant_id: str = ""
    display_name: str = ""
    approval_limits: ApprovalLimits | None = None


SYSTEM = Actor(id="flowline", kind=ActorKind.SYSTEM, display_name="Flowline engine")
