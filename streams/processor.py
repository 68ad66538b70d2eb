"""The instance processor: decode, decide, store, emit: nothing else.

It consumes `workflow.commands` and `workflow.step-results` (keyed by instance id, co-partitioned with
the state changelog). For a batch of one partition it decides every record against the states it holds,
stages the new states in an overlay, and returns the events (to `workflow.events`), step requests (to
`workflow.steps.<kind>`), dead letters (to `workflow.dlq`) and the changed states (to the changelog,
once per instance per batch). The worker commits all of that with the consumed offsets in one
transaction; only then does the overlay become the partition's state. Timers come due from the states
themselves and are sent back through `workflow.commands` as `FireTimer` commands.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from core.commands import Command, ExpireInstance, FireTimer, StartInstance
from core.decide import decide, fail_on_error
from core.events import CommandRejected
from core.state import InstanceState
from schemas import dlq
from schemas.codec import Codec, DecodeError
from streams import metrics
from streams.catalog import TemplateCatalog
from streams.settings import EngineSettings
from streams.timers import TimerIndex
from streams.transactional import BatchResult, Outgoing, partition_for

log = logging.getLogger(__name__)

# How long the states of a revoked partition are kept for its return. Bounded because the changelog's
# compaction may drop a tombstone after delete.retention.ms (a day by default): past that, a delta read
# could miss a deletion, so the partition is restored in full.
KEEP_REVOKED_SECONDS = 3600.0

FORGOTTEN = object()  # overlay marker: the instance's state is dropped (ExpireInstance) in this batch


def now_ms() -> int:
    return int(time.time() * 1000)


def dead_letter(codec: Codec, topic: str, record, reason: str, error_type: str, consumer: str) -> Outgoing:
    """The dead letter of `record`, bounded in size (schemas/dlq.py) so that it can always be written."""
    metrics.DLQ_RECORDS.labels(consumer, error_type).inc()
    return Outgoing(topic, dlq.letter_key(record), codec.encode(dlq.letter(record, reason, error_type, consumer)))


class InstanceProcessor:
    def __init__(self, settings: EngineSettings, catalog: TemplateCatalog, codec: Codec) -> None:
        self.settings = settings
        self.catalog = catalog
        self.codec = codec
        self.states: dict[int, dict[str, InstanceState]] = {}
        self.timers: dict[int, TimerIndex] = {}
        self._timer_producer: AIOKafkaProducer | None = None
        self._offsets: AIOKafkaConsumer | None = None
        # revoked partitions' states, with the changelog end offset they are current to and when
        self._kept: dict[int, tuple[int, dict[str, InstanceState], float]] = {}
        self.reused_partitions = 0

    # ------------------------------------------------------------------ ownership
    async def assigned(self, partitions: set[int]) -> None:
        """Take the partitions' states: kept ones plus the changelog written since, or restored in full.

        A worker that rejoins the group (after a rebalance it did not cause) usually gets its partitions
        back; rereading their whole changelog each time is what made a burst cost minutes (issue 9.10)."""
        now = time.monotonic()
        kept = {p: self._kept.pop(p) for p in partitions if p in self._kept}
        base = {p: (offset, states) for p, (offset, states, at) in kept.items() if now - at < KEEP_REVOKED_SECONDS}
        restored = await self._restore(partitions, base)
        for partition, states in restored.items():
            index = TimerIndex()
            for state in states.values():
                index.track(state)
            self.states[partition] = states
            self.timers[partition] = index
        # The restored states live as long as their partitions: keep them out of the cyclic collector's full
        # passes, which otherwise scan every one of them and stalled the loop (and its heartbeat) for seconds
        # (refcounting still frees them when they are replaced or dropped).
        gc.freeze()
        self.reused_partitions += len(base)
        metrics.REUSED_PARTITIONS.inc(len(base))
        metrics.INSTANCES.set(sum(len(s) for s in self.states.values()))

    async def revoked(self, partitions: set[int]) -> None:
        """Drop the partitions, but keep their states with the changelog's end offset: if they come back,
        only what was written after that offset (by their owner meanwhile, if any) is read."""
        ends: dict[int, int] = {}
        try:
            tps = [TopicPartition(self.settings.changelog_topic, p) for p in sorted(partitions)]
            ends = {tp.partition: end for tp, end in (await self._end_offsets(tps)).items()}
        except Exception:
            log.warning("could not read the changelog's end offsets; revoked states are not kept", exc_info=True)
        now = time.monotonic()
        for partition in partitions:
            states = self.states.pop(partition, None)
            self.timers.pop(partition, None)
            if states is not None and partition in ends:
                self._kept[partition] = (ends[partition], states, now)
        metrics.INSTANCES.set(sum(len(s) for s in self.states.values()))

    async def _end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        if self._offsets is None:
            self._offsets = AIOKafkaConsumer(bootstrap_servers=self.settings.bootstrap_servers,
                                             enable_auto_commit=False, isolation_level="read_committed")
            await self._offsets.start()
        return await self._offsets.end_offsets(tps)

    async def close(self) -> None:
        if self._offsets is not None:
            await self._offsets.stop()
            self._offsets = None

    async def _restore(self, partitions: set[int],
                       base: dict[int, tuple[int, dict[str, InstanceState]]] | None = None
                       ) -> dict[int, dict[str, InstanceState]]:
        """Rebuild the partitions' states from the compacted changelog (committed records only): from the
        beginning, or for a partition in `base` from its kept states and the records after their offset."""
        base = base or {}
        tps = [TopicPartition(self.settings.changelog_topic, p) for p in sorted(partitions)]
        restored: dict[int, dict[str, InstanceState]] = {p: (base[p][1] if p in base else {}) for p in partitions}
        consumer = AIOKafkaConsumer(bootstrap_servers=self.settings.bootstrap_servers, enable_auto_commit=False,
                                    isolation_level="read_committed", auto_offset_reset="earliest")
        await consumer.start()
        read = 0
        try:
            consumer.assign(tps)
            for tp in tps:
                if tp.partition in base:
                    consumer.seek(tp, base[tp.partition][0])
                else:
                    await consumer.seek_to_beginning(tp)
            ends = await consumer.end_offsets(tps)
            pending = {tp for tp, end in ends.items() if end > (base[tp.partition][0] if tp.partition in base else 0)}
            total = sum(ends.values())
            next_report = 100_000
            while pending:
                batches = await consumer.getmany(*pending, timeout_ms=200, max_records=1_000)
                for tp, records in batches.items():
                    states = restored[tp.partition]
                    read += len(records)
                    if read >= next_report:
                        log.info("restoring partitions %s: %d of at most %d changelog records read",
                                 sorted(partitions), read, total)
                        next_report += 100_000
                    for record in records:
                        key = record.key.decode()
                        if record.value is None:
                            states.pop(key, None)
                            continue
                        try:
                            states[key] = self.codec.decode(record.value)
                        except DecodeError:
                            log.exception("changelog record %s/%s does not decode; skipped", tp.partition,
                                          record.offset)
                    await asyncio.sleep(0)  # a long restore must not starve the group heartbeat
                for tp in list(pending):
                    if await consumer.position(tp) >= ends[tp]:
                        pending.discard(tp)
        finally:
            await consumer.stop()
        count = sum(len(s) for s in restored.values())
        metrics.RESTORED.inc(count)
        log.info("took %d instances of partitions %s (%d kept, %d changelog records read)", count,
                 sorted(partitions), sum(len(base[p][1]) for p in base), read)
        return restored

    # ------------------------------------------------------------------ a batch
    async def process(self, partition: int, records: Sequence) -> BatchResult:
        states = self.states.setdefault(partition, {})
        overlay: dict[str, InstanceState] = {}
        out: list[Outgoing] = []
        settings = self.settings
        for n, record in enumerate(records, 1):
            if n % 100 == 0:
                await asyncio.sleep(0)  # a long batch must not starve the group heartbeat or the other lanes
            try:
                command = self.codec.decode(record.value)
            except DecodeError as exc:
                out.append(dead_letter(self.codec, settings.dlq_topic, record, str(exc), "undecodable", "engine"))
                continue
            if not isinstance(command, Command):
                out.append(dead_letter(self.codec, settings.dlq_topic, record,
                                       f"{type(command).__name__} is not a command", "not_a_command", "engine"))
                continue
            key = command.instance_id.encode()
            home = partition_for(key, settings.partitions)
            if home != partition:
                out.append(dead_letter(
                    self.codec, settings.dlq_topic, record,
                    f"instance {command.instance_id} belongs to partition {home}, but the record arrived on "
                    f"partition {partition}: producers must key commands by instance id", "wrong_partition", "engine"))
                continue
            staged = overlay.get(command.instance_id)
            state = None if staged is FORGOTTEN else staged or states.get(command.instance_id)
            template_ref = ((state.template_id, state.template_version) if state is not None else
                            (command.template_id, command.template_version) if isinstance(command, StartInstance)
                            else None)
            template = self.catalog.get(*template_ref) if template_ref else None
            if template is None and template_ref is not None:
                await self.catalog.catch_up()
                template = self.catalog.get(*template_ref)
            now = now_ms()
            if template is None:
                reason = (f"template {template_ref[0]} v{template_ref[1]} is not known to the engine" if template_ref
                          else f"Expected an existing instance {command.instance_id}, but there is none")
                rejection = CommandRejected(instance_id=command.instance_id, seq=0, at=now,
                                            command_id=command.command_id, command_type=type(command).__name__,
                                            reason=reason)
                out.append(Outgoing(settings.events_topic, key, self.codec.encode(rejection)))
                metrics.DECISIONS.labels(type(command).__name__, "rejected").inc()
                continue
            try:
                decision = decide(state, command, template, now)
                produced = [Outgoing(settings.events_topic, key, self.codec.encode(event))
                            for event in decision.events]
                produced += [Outgoing(settings.step_topic(request.kind), key, self.codec.encode(request))
                             for request in decision.effects]
            except Exception as exc:  # a bug must not stop the partition: park the record, keep going
                log.exception("deciding %s failed", command.command_id)
                out.append(dead_letter(self.codec, settings.dlq_topic, record, f"engine error: {exc!r}",
                                       "engine_error", "engine"))
                try:  # last resort: the instance fails and says why, instead of never existing (core rule)
                    decision = fail_on_error(state, command, template, now, f"engine error: {exc!r}")
                    produced = [Outgoing(settings.events_topic, key, self.codec.encode(event))
                                for event in decision.events]
                    produced += [Outgoing(settings.step_topic(request.kind), key, self.codec.encode(request))
                                 for request in decision.effects]
                except Exception:
                    log.exception("recording the failure of %s failed too", command.instance_id)
                    continue
            if decision.forget:
                overlay[command.instance_id] = FORGOTTEN
            elif decision.state is not None and decision.state is not state:
                overlay[command.instance_id] = decision.state
            out.extend(produced)
            metrics.DECISIONS.labels(type(command).__name__,
                                     "rejected" if decision.rejected else "applied").inc()
        for instance_id, state in overlay.items():
            value = None if state is FORGOTTEN else self.codec.encode(state)  # None: a tombstone
            out.append(Outgoing(settings.changelog_topic, instance_id.encode(), value, partition=partition))

        def commit() -> None:
            index = self.timers.get(partition)
            for instance_id, state in overlay.items():
                if state is FORGOTTEN:
                    states.pop(instance_id, None)
                    metrics.EXPIRED.inc()
                    continue
                states[instance_id] = state
                if index is not None:
                    index.track(state)
            metrics.INSTANCES.set(sum(len(s) for s in self.states.values()))

        return BatchResult(records=out, on_commit=commit)

    # ------------------------------------------------------------------ retention
    def expired(self, now: int) -> list[tuple[int, ExpireInstance]]:
        """ExpireInstance commands for finished instances past their retention, per partition."""
        if self.settings.retention_hours <= 0:
            return []
        cutoff = now - int(self.settings.retention_hours * 3_600_000)
        found = []
        for partition, states in list(self.states.items()):
            for instance_id, state in list(states.items()):
                if state.is_terminal and state.updated_at <= cutoff:
                    found.append((partition, ExpireInstance(
                        command_id=f"expire:{instance_id}:{state.updated_at}", instance_id=instance_id,
                        issued_at=now, ended_at=state.updated_at)))
        return found

    # ------------------------------------------------------------------ timers
    async def sweep_timers(self, stop: asyncio.Event) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.settings.bootstrap_servers, enable_idempotence=True,
                                    linger_ms=self.settings.linger_ms)
        await producer.start()
        self._timer_producer = producer
        next_retention_sweep = 0
        try:
            while not stop.is_set():
                now = now_ms()
                if now >= next_retention_sweep:
                    next_retention_sweep = now + self.settings.retention_sweep_ms
                    for partition, command in self.expired(now):
                        await producer.send(self.settings.commands_topic, self.codec.encode(command),
                                            key=command.instance_id.encode(), partition=partition)
                for partition, index in list(self.timers.items()):
                    states = self.states.get(partition, {})
                    for instance_id, timer_id, fire_at in index.due(now, states):
                        command = FireTimer(command_id=f"fire:{timer_id}@{fire_at}", instance_id=instance_id,
                                            timer_id=timer_id, issued_at=now)
                        await producer.send(self.settings.commands_topic, self.codec.encode(command),
                                            key=instance_id.encode(), partition=partition)
                        metrics.TIMERS_FIRED.inc()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.settings.timer_sweep_ms / 1000)
        finally:
            await producer.stop()
