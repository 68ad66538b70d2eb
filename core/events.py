"""Events tell what happened to an instance. Only `apply` (core/state.py) turns them into state, so the
state of any instance can be rebuilt by replaying its events; `workflow.events` carries them to the read
model and to downstream consumers.

Every event carries the instance id, a per-instance sequence number (1, 2, 3, ... with no gaps), the time
it was decided at and the id of the command that caused it. A released event keeps its meaning: a new
meaning is a new event type with its own `apply` branch.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.actors import SYSTEM, Actor
from core.types import Json


@dataclass(frozen=True, kw_only=True)
class Event:
    instance_id: str
    seq: int = 0
    at: int = 0
    command_id: str = ""


@dataclass(frozen=True, kw_only=True)
class InstanceStarted(Event):
    template_id: str
    template_version: int
    tenant_id: str
    template_name: str
    trigger: Json
    source: str
    initiated_by: Actor
    agent_context: Json = None
    step_count: int = 0


@dataclass(frozen=True, kw_only=True)
class StepStarted(Event):
    """A step began an attempt; `retry` marks an automatic retry of the same visit (counts toward
    `retry_config.max_retries`)."""

    step: int
    name: str
    type: str
    attempt: int
    retry: bool = False


@dataclass(frozen=True, kw_only=True)
class StepRequested(Event):
    """A request went to the step's handler topic; `idempotency_key` is `instance_id:step:attempt`.

    Kind `payment`: the engine sent the payment service an order itself (`PaymentOrder`, docs/adr/0023);
    `idempotency_key` is then the payment's operation key and `deadline` when the attempt times out."""

    step: int
    attempt: int
    kind: str
    idempotency_key: str
    request: Json = None
    deadline: int = 0


@dataclass(frozen=True, kw_only=True)
class ConditionEvaluated(Event):
    step: int
    expression: str
    result: bool
    branch: str
    error: str = ""


@dataclass(frozen=True, kw_only=True)
class StepSucceeded(Event):
    step: int
    attempt: int
    output: Json = None


@dataclass(frozen=True, kw_only=True)
class StepFailed(Event):
    """One attempt failed. `retry_at` > 0 means a retry is scheduled; 0 means the failure is final."""

    step: int
    attempt: int
    error: str
    retry_at: int = 0
    on_failure: str = ""


@dataclass(frozen=True, kw_only=True)
class StepSkipped(Event):
    step: int
    reason: str


@dataclass(frozen=True, kw_only=True)
class ApprovalRequested(Event):
    step: int
    attempt: int
    approvers: Json
    level: str
    required: int
    deadline: int = 0
    escalation: int = 0


@dataclass(frozen=True, kw_only=True)
class DecisionRecorded(Event):
    """One approver's vote; `actor.kind` tells a human from an agent in the audit trail."""

    step: int
    actor: Actor
    decision: str
    reasoning: str = ""
    signature: str = ""
    signature_status: str = "absent"  # verified | absent (an invalid one never reaches the engine)
    agent_context: Json = None


@dataclass(frozen=True, kw_only=True)
class AgentRecommendation(Event):
    """An agent's decision that does not count: its approvals only recommend (`counts_toward_quorum: false`),
    or the step is above its limit and it escalates to humans (`refusal` says why). The step stays open and
    the human approvers see the recommendation and its reasoning."""

    step: int
    actor: Actor
    decision: str
    reasoning: str = ""
    refusal: str = ""
    signature_status: str = "absent"
    agent_context: Json = None


@dataclass(frozen=True, kw_only=True)
class StepApproved(Event):
    step: int
    approved_by: tuple[str, ...]
    automatic: bool = False


@dataclass(frozen=True, kw_only=True)
class StepRejected(Event):
    step: int
    rejected_by: tuple[str, ...]
    automatic: bool = False
    reason: str = ""


@dataclass(frozen=True, kw_only=True)
class StepTimedOut(Event):
    step: int
    attempt: int
    action: str
    timer_id: str = ""


@dataclass(frozen=True, kw_only=True)
class ApprovalEscalated(Event):
    step: int
    approvers: Json
    deadline: int = 0
    escalation: int = 1
    # False: the meaning of the first release (earlier votes keep counting). Every escalation decided since
    # sets it: earlier votes stay on record but the escalated approvers must make the whole quorum.
    resets_votes: bool = False


@dataclass(frozen=True, kw_only=True)
class WaitStarted(Event):
    step: int
    attempt: int
    until: int = 0
    condition: str = ""
    poll_at: int = 0
    deadline: int = 0


@dataclass(frozen=True, kw_only=True)
class WaitPolled(Event):
    """A wait condition was checked and is still false; the next check is at `poll_at`."""

    step: int
    attempt: int
    poll_at: int


@dataclass(frozen=True, kw_only=True)
class ExternalCallAccepted(Event):
    """An async external call was made; the step now waits for `complete-external` until `deadline`."""

    step: int
    attempt: int
    deadline: int = 0


@dataclass(frozen=True, kw_only=True)
class HumanReviewRequested(Event):
    """An external step failed with `on_failure: human_review`; approvers decide whether to go on."""

    step: int
    attempt: int
    approvers: Json
    error: str = ""
    deadline: int = 0


@dataclass(frozen=True, kw_only=True)
class InstancePaused(Event):
    actor: Actor = SYSTEM
    reason: str = ""


@dataclass(frozen=True, kw_only=True)
class InstanceResumed(Event):
    actor: Actor = SYSTEM


@dataclass(frozen=True, kw_only=True)
class InstanceCancelled(Event):
    actor: Actor = SYSTEM
    reason: str = ""


@dataclass(frozen=True, kw_only=True)
class StepRetried(Event):
    """A FAILED instance was asked to run a step again (manual retry)."""

    step: int
    actor: Actor = SYSTEM


@dataclass(frozen=True, kw_only=True)
class InstanceCompleted(Event):
    pass


@dataclass(frozen=True, kw_only=True)
class InstanceFailed(Event):
    step: int = 0
    reason: str = ""


@dataclass(frozen=True, kw_only=True)
class AdvanceChecked(Event):
    """The answer to `proceed_if_ready` when nothing could proceed: what the instance still waits for."""

    actor: Actor = SYSTEM
    blocking: str = ""


@dataclass(frozen=True, kw_only=True)
class TransitionRequested(Event):
    """A requested transition of a state-machine template that needs approval: its approval step runs now
    (`route`), and the transition is taken when it is approved."""

    from_state: str
    to_state: str
    actor: Actor = SYSTEM
    reason: str = ""
    route: tuple[int, ...] = ()
    signature_status: str = ""  # an agent's request: verified | absent (as on TransitionTaken)
    agent_context: Json = None


@dataclass(frozen=True, kw_only=True)
class TransitionTaken(Event):
    """A state-machine instance moved `from_state` -> `to_state` (from "" when it started): who (`actor`,
    human, agent or the engine for an automatic one), why, and the steps it runs now (`route`: exit actions,
    the transition's action, entry actions)."""

    from_state: str
    to_state: str
    actor: Actor = SYSTEM
    reason: str = ""
    automatic: bool = False
    route: tuple[int, ...] = ()
    # a transition an agent requested: its signature's status and agent_context, for the audit trail
    signature_status: str = ""
    agent_context: Json = None
    # the time-based transitions out of `to_state` (their indexes in the template's `transitions`) and when
    # each falls due (epoch ms, aligned): `apply` arms a TRANSITION_DUE timer for each (core/machine.py)
    due_transitions: tuple[int, ...] = ()
    due_at: tuple[int, ...] = ()


@dataclass(frozen=True, kw_only=True)
class TransitionDue(Event):
    """A time-based transition's time came (its timer fired while the instance was still in `from_state`).
    The engine takes it now if it may (state settled, `condition` holds), else as soon as the state's actions
    finish; a condition that is false keeps the instance where it is."""

    from_state: str
    to_state: str
    transition: int  # its index in the template's `transitions`
    timer_id: str = ""


@dataclass(frozen=True, kw_only=True)
class TransitionDeclined(Event):
    """The approval of a requested transition was rejected: the instance stays where it was."""

    from_state: str
    to_state: str
    reason: str = ""


@dataclass(frozen=True, kw_only=True)
class CommandRejected(Event):
    """An input that changed nothing, and why ("Expected ..., but ...").

    A command from an actor of another tenant is refused with `seq == 0` and `actor_tenant_id` set: it has
    no place in that instance's sequence or audit trail (an attacker must not be able to write into another
    tenant's log); the projector records it in the security log of the actor's own tenant instead.
    """

    command_type: str
    reason: str
    actor_id: str = ""
    actor_tenant_id: str = ""


EVENT_TYPES: tuple[type[Event], ...] = (
    InstanceStarted,
    StepStarted,
    StepRequested,
    ConditionEvaluated,
    StepSucceeded,
    StepFailed,
    StepSkipped,
    ApprovalRequested,
    DecisionRecorded,
    AgentRecommendation,
    StepApproved,
    StepRejected,
    StepTimedOut,
    ApprovalEscalated,
    WaitStarted,
    WaitPolled,
    ExternalCallAccepted,
    HumanReviewRequested,
    InstancePaused,
    InstanceResumed,
    InstanceCancelled,
    StepRetried,
    InstanceCompleted,
    InstanceFailed,
    AdvanceChecked,
    CommandRejected,
    TransitionRequested,
    TransitionTaken,
    TransitionDeclined,
    TransitionDue,
)
