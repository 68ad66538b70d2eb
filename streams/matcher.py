"""The trigger matcher: which templates does an incoming event start?

For every ACTIVE template whose trigger matches an event, a `StartInstance` with a deterministic instance
id (template id + event id). A redelivered event produces the same id and command id, which the instance
rejects as a duplicate, so an event never starts two instances of a template.

Two callers (docs/adr/0014): the instance processor consumes the trigger topics co-partitioned with
`workflow.commands` itself and decides each start in the transaction that consumes the event, under an id
that lands on the event's partition (`TriggerMatcher.match` with `partition`); the matcher worker consumes
the other trigger topics (another partition count) and sends its starts through `workflow.commands`, as
every start did before. With `FLOWLINE_ENGINE_INLINE_START=0` the matcher worker takes every trigger topic.

Input records are Avro `TransferEvent`s or `DomainEvent`s (single-object encoded); a JSON object with the
same fields is accepted too, for partners without an Avro library. Anything else goes to `workflow.dlq`.
SCHEDULED templates are started here too, through `workflow.commands`, by one engine (`run_schedules`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from croniter import croniter
from iso4217 import Currency

from core.actors import SYSTEM
from core.commands import StartInstance
from core.template import Template
from core.triggers import TriggerIndex, instance_id_for, instance_id_on, start_command_id
from core.types import TriggerType
from schemas.codec import Codec, DecodeError
from schemas.records import DomainEvent, TransferEvent
from streams import metrics
from streams.catalog import TemplateCatalog
from streams.positions import StartPositions
from streams.processor import dead_letter, now_ms
from streams.settings import EngineSettings
from streams.transactional import BatchResult, Outgoing, partition_for

log = logging.getLogger(__name__)

TRANSFER_FIELDS = ("event_id", "transfer_id", "event_type", "tenant_id", "amount_minor", "currency",
                   "currency_exponent", "source_account", "destination_account", "metadata", "occurred_at")


class InvalidInput(ValueError):
    pass


def _no_constants(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


DOMAIN_FIELDS = ("event_id", "event_type", "tenant_id", "occurred_at", "data")

# Bounds of a trigger event. They keep one event from costing the engine more than an event should (its
# trigger is copied into the instance state, every step request and the read model), and they keep every
# number within what the core, Avro (long) and PostgreSQL (bigint) hold exactly.
MAX_EVENT_BYTES = 256 * 1024
MAX_ID_CHARS = 256  # event, transfer, tenant ids, event types, accounts
MAX_METADATA_ENTRIES = 64
MAX_METADATA_VALUE_CHARS = 4096
MAX_DATA_DEPTH = 16
MAX_AMOUNT_MINOR = 10**15  # 10 trillion major units at two decimals; far above any real transfer
MAX_EPOCH_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z


def parse_transfer(codec: Codec, value: bytes | None) -> TransferEvent | DomainEvent:
    """A trigger-topic record: an Avro TransferEvent or DomainEvent, or the same as a JSON object (a JSON
    object with `amount_minor` is a transfer, otherwise a domain event with `event_id` and `event_type`).

    Whatever its form, the event is validated completely here (types, ranges, currency, sizes): a record
    that passes can become a trigger, and one that does not raises `InvalidInput` with the reason for the
    DLQ, never an exception further down (`"amount_minor": "lots"` once reached `Decimal` and looped)."""
    if not value:
        raise InvalidInput("empty record")
    if len(value) > MAX_EVENT_BYTES:
        raise InvalidInput(f"the event is {len(value)} bytes; at most {MAX_EVENT_BYTES} are accepted")
    if value[:1] == b"{":
        try:
            data = json.loads(value, parse_constant=_no_constants)
        except (ValueError, RecursionError) as exc:
            raise InvalidInput(f"not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise InvalidInput("a JSON transfer event must be an object")
        if "amount_minor" not in data and "currency" not in data:
            return validate_event(_domain_event(data))
        missing = [f for f in ("event_id", "amount_minor", "currency") if f not in data]
        if missing:
            raise InvalidInput(f"JSON transfer event lacks {', '.join(missing)}")
        unknown = sorted(set(data) - set(TRANSFER_FIELDS) - {"produced_at"})
        if unknown:
            raise InvalidInput(f"JSON transfer event has unknown fields {', '.join(unknown)}")
        _check_json_types(data)
        exponent = data.get("currency_exponent", _iso_exponent(data["currency"]))
        try:
            event = TransferEvent(**{"transfer_id": data["event_id"], "event_type": "transfer.created",
                                     "tenant_id": "", "source_account": "", "destination_account": "",
                                     "metadata": {}, "occurred_at": 0, **data, "currency_exponent": exponent})
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"JSON transfer event is malformed: {exc}") from None
        return validate_event(event)
    try:
        event = codec.decode(value)
    except DecodeError as exc:
        raise InvalidInput(str(exc)) from None
    if not isinstance(event, TransferEvent | DomainEvent):
        raise InvalidInput(f"expected a TransferEvent or DomainEvent, got {type(event).__name__}")
    return validate_event(event)


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "event_id": (str,), "transfer_id": (str,), "event_type": (str,), "tenant_id": (str,), "currency": (str,),
    "amount_minor": (int,), "currency_exponent": (int,), "source_account": (str,), "destination_account": (str,),
    "metadata": (dict,), "occurred_at": (int,), "produced_at": (int,),
}


def _check_json_types(data: dict) -> None:
    for name, value in data.items():
        wanted = _JSON_TYPES.get(name)
        if wanted and (not isinstance(value, wanted) or isinstance(value, bool)):
            kind = "an integer" if wanted == (int,) else "an object" if wanted == (dict,) else "a string"
            raise InvalidInput(f"{name} must be {kind}, got {json.dumps(value)[:80]}")


def _iso_exponent(currency: object) -> int:
    """The ISO 4217 minor-unit exponent of `currency` (2 for USD, 0 for JPY), or 2 when ISO has none."""
    try:
        exponent = Currency(currency).exponent if isinstance(currency, str) else None
    except ValueError:
        return 2  # validate_event refuses the code with its reason
    return 2 if exponent is None else exponent


def validate_event(event: TransferEvent | DomainEvent) -> TransferEvent | DomainEvent:
    """Refuse an event that cannot become a valid trigger; the reason names the field and the rule."""
    _check_text("event_id", event.event_id, required=True)
    _check_text("event_type", event.event_type, required=isinstance(event, DomainEvent))
    _check_text("tenant_id", event.tenant_id)
    _check_epoch("occurred_at", event.occurred_at)
    if isinstance(event, DomainEvent):
        if not isinstance(event.data, dict):
            raise InvalidInput("a domain event's data must be an object")
        _check_depth(event.data, "data", 0)
        return event
    for name in ("transfer_id", "source_account", "destination_account"):
        _check_text(name, getattr(event, name))
    _check_epoch("produced_at", event.produced_at)
    amount = event.amount_minor
    if not isinstance(amount, int) or isinstance(amount, bool):
        raise InvalidInput(f"amount_minor must be an integer, got {amount!r}"[:200])
    if not 0 <= amount <= MAX_AMOUNT_MINOR:
        raise InvalidInput(f"amount_minor must be between 0 and {MAX_AMOUNT_MINOR}, got {amount}")
    try:
        iso = Currency(event.currency)
    except ValueError:
        raise InvalidInput(f"currency must be an ISO 4217 code such as USD, got {event.currency!r}"[:200]) from None
    expected = iso.exponent
    if expected is not None and event.currency_exponent != expected:
        raise InvalidInput(f"currency_exponent of {iso.value} is {expected}, got {event.currency_exponent}")
    if expected is None and not 0 <= event.currency_exponent <= 18:
        raise InvalidInput(f"currency_exponent must be between 0 and 18, got {event.currency_exponent}")
    metadata = event.metadata
    if not isinstance(metadata, dict):
        raise InvalidInput("metadata must be an object of strings")
    if len(metadata) > MAX_METADATA_ENTRIES:
        raise InvalidInput(f"metadata has {len(metadata)} entries; at most {MAX_METADATA_ENTRIES} are accepted")
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise InvalidInput(f"metadata values must be strings, got {key!r}: {value!r}"[:200])
        _check_text(f"metadata key {key[:40]!r}", key)
        if len(value) > MAX_METADATA_VALUE_CHARS:
            raise InvalidInput(f"metadata {key[:40]!r} has {len(value)} characters; at most "
                               f"{MAX_METADATA_VALUE_CHARS} are accepted")
    return event


def _check_text(name: str, value: object, *, required: bool = False) -> None:
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be a string, got {type(value).__name__}")
    if required and not value:
        raise InvalidInput(f"{name} must not be empty")
    if len(value) > MAX_ID_CHARS:
        raise InvalidInput(f"{name} has {len(value)} characters; at most {MAX_ID_CHARS} are accepted")
    if any(ch < " " for ch in value):
        raise InvalidInput(f"{name} contains control characters")


def _check_epoch(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_EPOCH_MS:
        raise InvalidInput(f"{name} must be epoch milliseconds between 0 and {MAX_EPOCH_MS}, got {value!r}"[:200])


def _check_depth(value: object, where: str, depth: int) -> None:
    if depth > MAX_DATA_DEPTH:
        raise InvalidInput(f"{where} is nested deeper than {MAX_DATA_DEPTH} levels")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_depth(item, f"{where}.{key}"[:100], depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_depth(item, f"{where}[]", depth + 1)
    elif isinstance(value, float) and not math.isfinite(value):
        raise InvalidInput(f"{where} is not a finite number")


def tenant_of(event: TransferEvent | DomainEvent, topic: str, bound: dict[str, str]) -> str:
    """The tenant an event belongs to: the one its topic is bound to (FLOWLINE_TRIGGER_TOPIC_TENANTS), or the
    one it names. An event of no tenant, or naming another tenant than its topic's, starts nothing: a
    template only ever sees the events of its own tenant (issue 10.1: an event without a tenant once
    matched the templates of every tenant)."""
    named = event.tenant_id
    owner = bound.get(topic)
    if owner is not None:
        if named and named != owner:
            raise InvalidInput(f"the event names tenant {named!r}, but topic {topic} is bound to tenant {owner!r}")
        return owner
    if not named:
        raise InvalidInput(f"the event names no tenant_id, and topic {topic} is bound to no tenant "
                           "(FLOWLINE_TRIGGER_TOPIC_TENANTS)")
    return named


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
    tenant_id = data.get("tenant_id", "")
    if not isinstance(tenant_id, str):
        raise InvalidInput("tenant_id must be a string")
    return DomainEvent(event_id=data["event_id"], event_type=data["event_type"], tenant_id=tenant_id,
                       occurred_at=occurred_at, data=data.get("data") or {})


@dataclass
class Matched:
    """What one trigger-topic record gives: the instances it starts, or its dead letter (and none)."""

    starts: list[StartInstance] = field(default_factory=list)
    dead_letter: Outgoing | None = None


class TriggerMatcher:
    """The trigger rule, in one home: parse and validate an event, find its tenant, match that tenant's
    ACTIVE templates, build the `StartInstance` commands. The matcher worker (this class as its partition
    logic) sends them through `workflow.commands`; the instance processor calls `match` itself for the
    trigger topics it consumes and decides the starts in the transaction that consumes the event
    (docs/adr/0014)."""

    def __init__(self, settings: EngineSettings, catalog: TemplateCatalog, codec: Codec) -> None:
        self.settings = settings
        self.catalog = catalog
        self.codec = codec
        # set by the engine (streams/app.py): where this worker starts a trigger partition it takes
        self.positions: StartPositions | None = None

    async def assigned(self, partitions: set[int]) -> None:
        if self.positions is not None:
            await self.positions.place(partitions)

    async def revoked(self, partitions: set[int]) -> None:
        pass

    async def templates(self, ends: asyncio.Future | None = None) -> TriggerIndex:
        """The ACTIVE templates an event may start, after the catalog check: every template version the API
        has answered for before the events about to be matched were produced is known after this
        (docs/adr/0007-a-template-matches-from-the-moment-the-api-answered.md). `ends`: a check begun
        (`TemplateCatalog.check_ahead`) after those events were fetched."""
        await self.catalog.catch_up(ends)
        return self.catalog.index()

    def match(self, record, templates: TriggerIndex, *, partition: int | None = None) -> Matched:
        """The instances one trigger-topic record starts (its dead letter if it is invalid or the match
        fails). With `partition`, each instance id lands on that partition of `workflow.commands` (the
        record's own: the processor decides the start where the event was consumed); without, it is
        today's id, wherever it lands (`core.triggers`)."""
        topic = self.settings.unprefixed(record.topic)
        try:
            event = parse_transfer(self.codec, record.value)
            tenant_id = tenant_of(event, topic, self.settings.trigger_topic_tenants)
            trigger = event.to_trigger()
        except (InvalidInput, ValueError, TypeError, ArithmeticError) as exc:
            return Matched(dead_letter=dead_letter(self.codec, self.settings.dlq_topic, record, str(exc),
                                                   "invalid_input", "matcher"))
        trigger["tenant_id"] = tenant_id  # only this tenant's templates can match (core.triggers.matches)
        try:
            return Matched(starts=[
                self.start_command(template, trigger, f"event:{topic}:{event.event_id}", tenant_id=tenant_id,
                                   partition=partition)
                for template in templates.matching(topic, trigger)])
        except Exception as exc:  # never let one event stop the partition
            log.exception("matching event %s failed", event.event_id)
            return Matched(dead_letter=dead_letter(self.codec, self.settings.dlq_topic, record,
                                                   f"matcher error: {exc!r}", "matcher_error", "matcher"))

    async def process(self, partition: int, records: Sequence) -> BatchResult:
        out: list[Outgoing] = []
        templates = await self.templates()
        for n, record in enumerate(records, 1):
            if n % 100 == 0:
                await asyncio.sleep(0)  # a long batch must not starve the group heartbeat
            matched = self.match(record, templates)
            if matched.dead_letter is not None:
                out.append(matched.dead_letter)
            out.extend(self.outgoing(command) for command in matched.starts)
        return BatchResult(records=out)

    def start_command(self, template: Template, trigger: dict, source: str, tenant_id: str,
                      partition: int | None = None) -> StartInstance:
        partitions = self.settings.partitions
        instance_id = (instance_id_for(template.template_id, source) if partition is None else
                       instance_id_on(template.template_id, source, partition, partitions,
                                      lambda key: partition_for(key.encode(), partitions)))
        metrics.STARTS.inc()
        return StartInstance(command_id=start_command_id(instance_id), instance_id=instance_id,
                             issued_at=now_ms(), template_id=template.template_id,
                             template_version=template.version, tenant_id=tenant_id, trigger=trigger,
                             source=source, initiated_by=SYSTEM)

    def outgoing(self, command: StartInstance) -> Outgoing:
        """A start sent through `workflow.commands`, keyed by its instance id (the old path, ADR 14)."""
        return Outgoing(self.settings.commands_topic, command.instance_id.encode(), self.codec.encode(command))

    async def run_schedules(self, stop: asyncio.Event, send, owns_schedule: Callable[[], bool]) -> None:
        """Start SCHEDULED templates at their cron ticks (no catch-up of ticks missed while down), while
        `owns_schedule()`: the engine owning partition 0 of the matcher's topics (or, when the matcher
        consumes nothing, of the processor's) fires them. Two owners at once fire a tick under the same id,
        which the core rejects the second time."""
        last_check = datetime.now(UTC)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
            now = datetime.now(UTC)
            if owns_schedule():
                for template in self.catalog.active():
                    if template.trigger_type is not TriggerType.SCHEDULED:
                        continue
                    cron = croniter(template.trigger_config["cron"], last_check)
                    tick = cron.get_next(datetime)
                    while tick <= now:
                        source = f"schedule:{tick.isoformat()}"
                        trigger = dict(template.trigger_config.get("trigger_data") or {})
                        trigger.update(scheduled_at=tick.isoformat())
                        command = self.start_command(template, trigger, source, tenant_id=template.tenant_id)
                        await send(self.outgoing(command))
                        tick = cron.get_next(datetime)
            last_check = now
