"""Commands ask an instance to change. Every one carries an id the instance remembers, so a redelivered
command is rejected out loud instead of applied twice (the second layer under Kafka transactions).

Step numbers are 1-based, as in the API paths and `skip_to:N`.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.actors import SYSTEM, Actor
from core.types import Json


@dataclass(frozen=True, kw_only=True)
class Command:
    command_id: str
    instance_id: str
    issued_at: int = 0  # epoch milliseconds, set by whoever issued it; informational


@dataclass(frozen=True, kw_only=True)
class StartInstance(Command):
    template_id: str
    template_version: int
    tenant_id: str
    trigger: Json
    source: str = "manual"  # "event:<topic>:<event id>", "schedule:<tick>", or "manual"
    initiated_by: Actor = SYSTEM
    agent_context: Json = None


@dataclass(frozen=True, kw_only=True)
class RecordDecision(Command):
    """An approver's decision: `decision` is "approve" or "reject"."""

    step: int
    decision: str
    actor: Actor
    reasoning: str = ""
    signature: str = ""
    signature_status: str = "absent"  # the gateway verified the Ed25519 signature: verified | absent
    agent_context: Json = None  # the agent's {agent_id, intent, conversation_id}, copied to the audit entry


@dataclass(frozen=True, kw_only=True)
class ReportStepResult(Command):
    """A handler's result for one attempt of one step.

    `outcome` is "succeeded", "failed", or "accepted" (an async external call was made and now waits for
    its callback). `retryable=False` skips the retry policy (a 4xx from a partner, a rejected payment).
    """

    step: int
    attempt: int
    outcome: str
    output: Json = None
    error: str = ""
    retryable: bool = True


@dataclass(frozen=True, kw_only=True)
class RecordPaymentResult(Command):
    """The payment service's answer to an engine's payment order (docs/adr/0023), relayed from
    `payments.results` by the action handler's relay.

    Matched by `operation_key` (`instance:step:v<visit>`, the order's idempotency key), not by attempt: the
    service answers every attempt of a visit with the one result, so whichever attempt's answer arrives first
    is the step's. `status` is "succeeded" or "failed"."""

    step: int
    operation_key: str
    status: str
    output: Json = None
    error: str = ""


@dataclass(frozen=True, kw_only=True)
class CompleteExternal(Command):
    """An external system's verified callback for an async external step: status "completed" or "failed"."""

    step: int
    status: str
    result: Json = None
    actor: Actor = SYSTEM


@dataclass(frozen=True, kw_only=True)
class Advance(Command):
    """`proceed_if_ready`: re-check what the current step waits for and move on if it is satisfied."""

    actor: Actor = SYSTEM


@dataclass(frozen=True, kw_only=True)
class PauseInstance(Command):
    actor: Actor = SYSTEM
    reason: str = ""


@dataclass(frozen=True, kw_only=True)
class ResumeInstance(Command):
    actor: Actor = SYSTEM


@dataclass(frozen=True, kw_only=True)
class CancelInstance(Command):
    actor: Actor = SYSTEM
    reason: str = ""


@dataclass(frozen=True, kw_only=True)
class EscalateApproval(Command):
    """Hand a waiting approval to the template's escalation target now (the PRD's `escalate`).

    `approvers`, if given, must be the template's target (the caller never chooses who counts next). Votes
    already cast stay on record but stop counting; `timeout_hours` > 0 sets a new deadline, 0 keeps none.
    """

    step: int
    approvers: Json
    actor: Actor = SYSTEM
    reason: str = ""
    timeout_hours: float = 0.0


@dataclass(frozen=True, kw_only=True)
class RetryStep(Command):
    """Run a failed step again (the PRD's `retry_step`); only a FAILED instance at that step accepts it."""

    step: int
    actor: Actor = SYSTEM


@dataclass(frozen=True, kw_only=True)
class FireTimer(Command):
    """A durable timer fell due (the design's `TimerFired`).

    Firing goes through `workflow.commands` instead of acting directly, so it is ordered with every other
    input and applied exactly once; a timer the instance no longer holds is rejected. The engine's sweep
    sends its fires as `FiredTimers` records, each standing for many of these (see there).
    """

    timer_id: str

    @classmethod
    def of(cls, instance_id: str, timer_id: str, fire_at: int, issued_at: int = 0) -> FireTimer:
        """The fire of one armed timer. Its command id names the timer and the due time it was armed for,
        so every copy of one fire (a refire, a redelivered batch) is the same command: the instance applies
        the first and rejects the rest, and a timer re-armed for another time is a new fire."""
        return cls(command_id=f"fire:{timer_id}@{fire_at}", instance_id=instance_id, timer_id=timer_id,
                   issued_at=issued_at)


@dataclass(frozen=True, kw_only=True)
class DueTimer:
    """One armed timer found due: which instance, which timer, the due time it was armed for."""

    instance_id: str
    timer_id: str
    fire_at: int


@dataclass(frozen=True, kw_only=True)
class FiredTimers:
    """Many timers of one partition fired at once: one record on `workflow.commands` instead of one per timer.

    Why: a hundred thousand timers due in the same second were a hundred thousand records to encode and
    send, from the event loop that also decides them, and firing fell behind deciding (issue 15, docs/
    performance.md "State at scale"). A few hundred of these carry them all. It is not a command to one
    instance: the processor takes it apart into `FireTimer` commands (`commands()`) and decides each one
    exactly as if it had come alone, so a timer fired twice, or no longer armed, is rejected by the
    instance by its id as before. Every timer named here lives on the partition the record is written to
    (the processor dead-letters one that does not, as it does a misplaced command).
    """

    batch_id: str  # informational: which sweep wrote it (`<partition>@<issued_at>:<n>`)
    issued_at: int
    timers: tuple[DueTimer, ...] = ()

    def commands(self) -> list[FireTimer]:
        return [FireTimer.of(t.instance_id, t.timer_id, t.fire_at, self.issued_at) for t in self.timers]


@dataclass(frozen=True, kw_only=True)
class ExpireInstance(Command):
    """Let the engine forget a finished instance whose retention has passed (its audit trail stays in the
    read model and in `workflow.events`). Sent by the engine's own sweep; `ended_at` names the state it
    judged, so an instance that changed meanwhile is not forgotten."""

    ended_at: int


@dataclass(frozen=True, kw_only=True)
class RequestTransition(Command):
    """Ask a state-machine instance to move to `target` (a human or an agent, with a reason)."""

    target: str
    actor: Actor = SYSTEM
    reason: str = ""
    signature: str = ""  # an agent's Ed25519 signature (core/agent_signing.py `canonical_transition`)
    signature_status: str = "absent"  # the gateway verified it: verified | absent
    agent_context: Json = None  # the agent's {agent_id, conversation_id, ...}, copied to the audit entry


COMMAND_TYPES: tuple[type[Command], ...] = (
    StartInstance,
    RecordDecision,
    ReportStepResult,
    RecordPaymentResult,
    CompleteExternal,
    Advance,
    PauseInstance,
    ResumeInstance,
    CancelInstance,
    RetryStep,
    FireTimer,
    EscalateApproval,
    ExpireInstance,
    RequestTransition,
)
