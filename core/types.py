"""Vocabulary shared by every part of Flowline.

The enums carry the PRD's names. TaskStatus adds COMPLETED and FAILED for steps that are not approvals
(an action that ran is not "APPROVED"). `Json` marks a field whose value is arbitrary JSON data (trigger
payloads, step outputs): serializers store it as a JSON string, everything else is typed.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any


class _JsonMarker:
    def __repr__(self) -> str:
        return "JSON"


JSON = _JsonMarker()
Json = Annotated[Any, JSON]


class WorkflowStatus(StrEnum):
    DRAFT = "DRAFT"
    ACTIVE = "ACTIVE"
    PAUSED = "PAUSED"
    COMPLETED = "COMPLETED"
    CANCELLED = "CANCELLED"
    FAILED = "FAILED"


TERMINAL_STATUSES = frozenset({WorkflowStatus.COMPLETED, WorkflowStatus.CANCELLED, WorkflowStatus.FAILED})


class TaskStatus(StrEnum):
    PENDING = "PENDING"
    IN_PROGRESS = "IN_PROGRESS"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"
    SKIPPED = "SKIPPED"
    TIMED_OUT = "TIMED_OUT"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


FINISHED_TASK_STATUSES = frozenset(
    {
        TaskStatus.APPROVED,
        TaskStatus.REJECTED,
        TaskStatus.SKIPPED,
        TaskStatus.TIMED_OUT,
        TaskStatus.COMPLETED,
        TaskStatus.FAILED,
    }
)


class ApprovalLevel(StrEnum):
    SINGLE = "SINGLE"
    DUAL = "DUAL"
    COMMITTEE = "COMMITTEE"
    AUTO = "AUTO"


class TriggerType(StrEnum):
    MANUAL = "MANUAL"
    SCHEDULED = "SCHEDULED"
    EVENT = "EVENT"
    THRESHOLD = "THRESHOLD"


class StepType(StrEnum):
    APPROVAL = "approval"
    CONDITION = "condition"
    ACTION = "action"
    WAIT = "wait"
    NOTIFICATION = "notification"
    EXTERNAL = "external"


class ActorKind(StrEnum):
    HUMAN = "human"
    AGENT = "agent"
    SYSTEM = "system"


class Awaiting(StrEnum):
    """What an IN_PROGRESS step waits for: the answer to "who is blocking?"."""

    NOTHING = ""
    HANDLER = "handler"
    PAYMENT = "payment"  # an action step's payment order, sent by the engine to the payment service (ADR 23)
    APPROVAL = "approval"
    CALLBACK = "callback"
    TIME = "time"
    CONDITION = "condition"
    RETRY = "retry"
    REVIEW = "review"
