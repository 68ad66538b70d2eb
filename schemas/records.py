"""Records that cross Flowline's topics but are not the core's messages: upstream transfer and domain
events, the dead-letter record, the compacted template record, and the payment command/result pair the action handler
exchanges with PayOS.

They are dataclasses like the core's, so `schemas.avro` derives their schemas the same way. Times are
epoch milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from core.effects import PaymentOrder
from core.types import Json, WorkflowStatus


@dataclass(frozen=True, kw_only=True)
class TransferEvent:
    """A payment service's transfer event on `payments.transfers` (keyed by event id)."""

    event_id: str
    transfer_id: str
    event_type: str  # "transfer.created", "transfer.completed", ...
    tenant_id: str
    amount_minor: int  # in the currency's minor unit: cents for USD, 1 for JPY
    currency: str
    currency_exponent: int = 2
    source_account: str
    destination_account: str
    metadata: dict[str, str] = field(default_factory=dict)
    occurred_at: int
    produced_at: int = 0

    def __post_init__(self) -> None:
        if self.currency_exponent < 0:
            raise ValueError(f"currency_exponent must be >= 0, got {self.currency_exponent}")

    @property
    def amount(self) -> int | float:
        """Major units, exact: an int when integral (12345 cents -> 123.45, 100 cents -> 1)."""
        major = Decimal(self.amount_minor).scaleb(-self.currency_exponent)
        return int(major) if major == major.to_integral_value() else float(major)

    def to_trigger(self) -> dict[str, Any]:
        """The instance's `trigger` data: what template conditions and `{{trigger.*}}` see.

        `id` is the transfer's id (the epic's `"transfer_id": "{{trigger.id}}"` hands it to
        `execute_transfer`); the event's own id is `event_id`.
        """
        return {
            "id": self.transfer_id,
            "event_id": self.event_id,
            "transfer_id": self.transfer_id,
            "event_type": self.event_type,
            "tenant_id": self.tenant_id,
            "amount": self.amount,
            "amount_minor": self.amount_minor,
            "currency": self.currency,
            "source": self.source_account,
            "destination": self.destination_account,
            "metadata": dict(self.metadata),
            "occurred_at": self.occurred_at,
        }


@dataclass(frozen=True, kw_only=True)
class DomainEvent:
    """Any other upstream event (an account opened, a limit changed) on a trigger topic.

    `data` is the event's own JSON object; templates see it at the top level of `trigger`
    (`trigger.customer_id`), next to `id`/`event_id`, `event_type`, `tenant_id` and `occurred_at`.
    """

    event_id: str
    event_type: str
    tenant_id: str = ""
    occurred_at: int = 0
    data: Json = None

    def to_trigger(self) -> dict[str, Any]:
        payload = dict(self.data) if isinstance(self.data, dict) else {}
        return {**payload, "id": payload.get("id", self.event_id), "event_id": self.event_id,
                "event_type": self.event_type, "tenant_id": self.tenant_id, "occurred_at": self.occurred_at}


@dataclass(frozen=True, kw_only=True)
class DlqRecord:
    """A record that could not be processed, with the original bytes and why (`workflow.dlq`)."""

    source_topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    reason: str
    error_type: str
    failed_at: int
    consumer: str  # the consumer group or process that gave up on it


@dataclass(frozen=True, kw_only=True)
class TemplateRecord:
    """One version of a template on the compacted `workflow.templates` topic (a deletion is a tombstone)."""

    template_id: str
    version: int
    tenant_id: str
    name: str
    status: WorkflowStatus
    document: Json  # the template's JSON document, as stored in PostgreSQL
    updated_at: int


@dataclass(frozen=True, kw_only=True)
class PaymentCommand:
    """An action step asks PayOS to do something (`payments.commands`, keyed by idempotency key)."""

    idempotency_key: str  # the step request id, `instance_id:step:attempt`: PayOS drops duplicates
    action: str  # "execute_transfer", "simulate_transfer", ...
    tenant_id: str
    params: Json
    requested_at: int


def payment_command(order: PaymentOrder) -> PaymentCommand:
    """The engine's payment order as the command the payment service reads (the same fields: docs/adr/0023)."""
    return PaymentCommand(idempotency_key=order.idempotency_key, action=order.action, tenant_id=order.tenant_id,
                          params=order.params, requested_at=order.requested_at)


@dataclass(frozen=True, kw_only=True)
class PaymentResult:
    """PayOS's answer to one `PaymentCommand` (`payments.results`, keyed by idempotency key)."""

    idempotency_key: str
    status: str  # "succeeded" or "failed"
    output: Json = None
    error: str = ""
    completed_at: int
