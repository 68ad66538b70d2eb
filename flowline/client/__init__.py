"""The typed Flowline REST client: `AsyncClient` (aiohttp) and its blocking twin `Client`.

See docs/sdk.md. Every error response becomes one of the exceptions below (RFC 7807 problem documents);
results are the dataclasses of `flowline.client.models`.
"""

from flowline.client.aio import AsyncClient
from flowline.client.errors import (
    ApiError,
    BadRequest,
    Conflict,
    FieldError,
    FlowlineError,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    TransportError,
    Unauthorized,
    Unavailable,
    ValidationFailed,
)
from flowline.client.models import (
    ActorRef,
    AgentActions,
    AgentPermissions,
    CallbackUrl,
    CommandAccepted,
    CommandResult,
    Instance,
    InstanceDetail,
    Page,
    PendingApproval,
    SecretName,
    StepExecution,
    Template,
    TimelineEntry,
    TransitionOption,
    Transitions,
    ValidationResult,
)
from flowline.client.sync import Client

__all__ = [
    "ActorRef",
    "AgentActions",
    "AgentPermissions",
    "ApiError",
    "AsyncClient",
    "BadRequest",
    "CallbackUrl",
    "Client",
    "CommandAccepted",
    "CommandResult",
    "Conflict",
    "FieldError",
    "FlowlineError",
    "Forbidden",
    "Instance",
    "InstanceDetail",
    "NotFound",
    "Page",
    "PayloadTooLarge",
    "PendingApproval",
    "SecretName",
    "StepExecution",
    "Template",
    "TimelineEntry",
    "TransitionOption",
    "Transitions",
    "TransportError",
    "Unauthorized",
    "Unavailable",
    "ValidationFailed",
    "ValidationResult",
]
