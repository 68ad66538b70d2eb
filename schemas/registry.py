"""Every record type a Flowline topic carries, i.e. every type with a committed `schemas/*.avsc`.

Topics and what they carry (keys: instance id for the workflow topics, event id for inputs):
- `workflow.commands`, `workflow.step-results`: `COMMAND_TYPES` (a result is a `ReportStepResult`), and on
  `workflow.commands` the timer sweep's `FiredTimers` (many `FireTimer`s of one partition in one record)
- `workflow.events`: `EVENT_TYPES`
- `workflow.steps.<kind>`: `StepRequest`
- the `instances` changelog: `InstanceState`
- `payments.transfers` and other trigger topics: `TransferEvent` or `DomainEvent`;
  `payments.commands` / `payments.results`: `PaymentCommand` / `PaymentResult`;
  `workflow.templates`: `TemplateRecord`; `workflow.dlq`: `DlqRecord`
"""

from __future__ import annotations

from core.commands import COMMAND_TYPES, FiredTimers
from core.effects import StepRequest
from core.events import EVENT_TYPES
from core.state import InstanceState
from schemas.records import DlqRecord, DomainEvent, PaymentCommand, PaymentResult, TemplateRecord, TransferEvent

RECORD_TYPES: tuple[type, ...] = (
    *COMMAND_TYPES,
    FiredTimers,
    *EVENT_TYPES,
    InstanceState,
    StepRequest,
    TransferEvent,
    DomainEvent,
    DlqRecord,
    TemplateRecord,
    PaymentCommand,
    PaymentResult,
)
