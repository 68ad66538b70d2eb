"""The trigger matcher: which templates does an incoming event start?

It consumes the trigger topics (`payments.transfers` and any configured domain topics) and, for every
ACTIVE template whose trigger matches, sends a `StartInstance` to `workflow.commands` keyed by a
deterministic instance id (template id + event id). A redelivered event produces the same id and command
id, which the instance rejects as a duplicate, so an event never starts two instances of a template.

Input records are Avro `TransferEvent`s or `DomainEvent`s (single-object encoded); a JSON object with the
same fields is accepted too, for partners without an Avro library. Anything else goes to `workflow.dlq`.
SCHEDULED templates are started here too, by the worker that owns partition 0 of the first trigger topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Sequence
from datetime import UTC, datetime

from croniter import croniter

from core.actors import SYSTEM
from core.commands import StartInstance
from core.template import Template
from core.triggers import instance_id_for, matching_templates, start_command_id
from core.types import TriggerType
from schemas.codec import Codec, DecodeError
from schemas.records import DomainEvent, TransferEvent
from streams import metrics
from streams.catalog import TemplateCatalog
from streams.processor import dead_letter, now_ms
from streams.settings import EngineSettings
from streams.transactional import BatchResult, Outgoing

log = logging.getLogger(__name__)

TRANSFER_FIELDS = ("event_id", "transfer_id", "event_type", "tenant_id", "amount_minor", "currency",
                   "currency_exponent", "source_account", "destination_account", "metadata", "occurred_at")


class InvalidInput(ValueError):
    pass


def _no_constants(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


DOMAIN_FIELDS = ("event_id", "event_type", "tenant_id", "occurred_at", "data")


def parse_transfer(codec: Codec, value: bytes | None) -> TransferEvent | DomainEvent:
    """A trigger-topic record: an Avro TransferEvent or DomainEvent, or the same as a JSON object (a JSON
    object with `amount_minor` is a transfer, otherwise a domain event with `event_id` and `event_type`)."""
    if not value:
        raise InvalidInput("empty record")
    if value[:1] == b"{":
        try:
            data = json.loads(value, parse_constant=_no_constants)
        except ValueError as exc:
            raise InvalidInput(f"not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise InvalidInput("a JSON transfer event must be an object")
        if "amount_minor" not in data and "currency" not in data:
            return _domain_event(data)
        missing = [f for f in ("event_id", "amount_minor", "currency") if f not in data]
        if missing:
            raise InvalidInput(f"JSON transfer event lacks {', '.join(missing)}")
        unknown = sorted(set(data) - set(TRANSFER_FIELDS) - {"produced_at"})
        if unknown:
            raise InvalidInput(f"JSON transfer event has unknown fields {', '.join(unknown)}")
        try:
            return TransferEvent(**{"transfer_id": data["event_id"], "event_type": "transfer.created",
                                    "tenant_id": "", "source_account": "", "destination_account": "",
                                    "metadata": {}, "occurred_at": 0, **data})
        except TypeError as exc:
            raise InvalidInput(f"JSON transfer event is malformed: {exc}") from None
    try:
        event = codec.decode(value)
    except DecodeError as exc:
        raise InvalidInput(str(exc)) from None
    if not isinstance(event, TransferEvent | DomainEvent):
        raise InvalidInput(f"expected a TransferEvent or DomainEvent, got {type(event).__name__}")
    return event


def _domain_event(data: dict) -> DomainEvent:
    missing = [f for f in ("event_id", "event_type") if not isinstance(data.get(f), str) or not data.get(f)]
    if missing:
        raise InvalidInput(f"a JSON event needs {' and '.join(missing)} (a transfer also needs amount_minor and "
                           "currency)")
    unknown = sorted(set(data) - set(DOMAIN_FIELDS))
    if unknown:
        raise InvalidInput(f"JSON domain event has unknown fields {', '.join(unknown)}; put them under data")
    if "data" in data and not isinstance(data["data"], dict):
        raise InvalidInput("a domain event's data must be an object")
    occurred_at = data.get("occurred_at", 0)
    if not isinstance(occurred_at, int) or isinstance(occurred_at, bool):
        raise InvalidInput("occurred_at must be epoch milliseconds")
    return DomainEvent(event_id=data["event_id"], event_type=data["event_type"],
                       tenant_id=str(data.get("tenant_id") or ""), occurred_at=occurred_at,
                       data=data.get("data") or {})


class TriggerMatcher:
    def __init__(self, settings: EngineSettings, catalog: TemplateCatalog, codec: Codec) -> None:
        self.settings = settings
        self.catalog = catalog
        self.codec = codec
        self.owns_schedule = False

    async def assigned(self, partitions: set[int]) -> None:
        if 0 in partitions:
            self.owns_schedule = True

    async def revoked(self, partitions: set[int]) -> None:
        if 0 in partitions:
            self.owns_schedule = False

    async def process(self, partition: int, records: Sequence) -> BatchResult:
        out: list[Outgoing] = []
        templates = self.catalog.active()
        for record in records:
            try:
                event = parse_transfer(self.codec, record.value)
                trigger = event.to_trigger()
            except (InvalidInput, ValueError, TypeError) as exc:
                out.append(dead_letter(self.codec, self.settings.dlq_topic, record, str(exc), "invalid_input",
                                       "matcher"))
                continue
            topic = self.settings.unprefixed(record.topic)
            try:
                starts = [self._start(template, trigger, f"event:{topic}:{event.event_id}",
                                      tenant_id=event.tenant_id or template.tenant_id)
                          for template in matching_templates(templates, topic, trigger)]
            except Exception as exc:  # never let one event stop the partition
                log.exception("matching event %s failed", event.event_id)
                out.append(dead_letter(self.codec, self.settings.dlq_topic, record, f"matcher error: {exc!r}",
                                       "matcher_error", "matcher"))
                continue
            out.extend(starts)
        return BatchResult(records=out)

    def _start(self, template: Template, trigger: dict, source: str, tenant_id: str) -> Outgoing:
        instance_id = instance_id_for(template.template_id, source)
        command = StartInstance(command_id=start_command_id(instance_id), instance_id=instance_id,
                                issued_at=now_ms(), template_id=template.template_id,
                                template_version=template.version, tenant_id=tenant_id, trigger=trigger,
                                source=source, initiated_by=SYSTEM)
        metrics.STARTS.inc()
        return Outgoing(self.settings.commands_topic, instance_id.encode(), self.codec.encode(command))

    async def run_schedules(self, stop: asyncio.Event, send) -> None:
        """Start SCHEDULED templates at their cron ticks (no catch-up of ticks missed while down)."""
        last_check = datetime.now(UTC)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
            now = datetime.now(UTC)
            if self.owns_schedule:
                for template in self.catalog.active():
                    if template.trigger_type is not TriggerType.SCHEDULED:
                        continue
                    cron = croniter(template.trigger_config["cron"], last_check)
                    tick = cron.get_next(datetime)
                    while tick <= now:
                        source = f"schedule:{tick.isoformat()}"
                        trigger = dict(template.trigger_config.get("trigger_data") or {})
                        trigger.update(scheduled_at=tick.isoformat())
                        out = self._start(template, trigger, source, tenant_id=template.tenant_id)
                        await send(out)
                        tick = cron.get_next(datetime)
            last_check = now
