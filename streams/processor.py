"""The instance processor: decode, decide, store, emit: nothing else.

It consumes `workflow.commands` and `workflow.step-results` (keyed by instance id, co-partitioned with the
state changelog), and the trigger topics co-partitioned with them (`InlineStarts`: an event starts its
instances in the transaction that consumes it, docs/adr/0014). For a batch of one partition it decides every
record against the states it holds, stages the new states in an overlay, and returns the events (to
`workflow.events`), step requests (to `workflow.steps.<kind>`), dead letters (to `workflow.dlq`) and the
changed states (to the changelog, once per instance per batch). The worker commits all of that with the
consumed offsets in one transaction, the offsets as one more changelog record (ADR 13: `offsets_record`,
`stored_offsets`); only then does the overlay reach the partition's local store (streams/state_store.py: the
encoded states on disk with the changelog offset they are current to, a small decoded cache in memory).
Timers come due from the store's index of due times and are sent back through `workflow.commands`, many
of one partition in one `FiredTimers` record, which `process` takes apart into `FireTimer` commands.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import shutil
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.protocol.metadata import MetadataRequest

from core.commands import Command, DueTimer, ExpireInstance, FiredTimers, StartInstance
from core.decide import decide, fail_on_error
from core.effects import PaymentOrder, StepRequest
from core.events import CommandRejected
from core.state import InstanceState
from schemas import dlq
from schemas.codec import SINGLE_OBJECT_MAGIC, Codec, DecodeError
from schemas.compacted import read_to_end
from schemas.records import payment_command
from schemas.topics import PAYMENTS_COMMANDS
from streams import metrics
from streams.catalog import TemplateCatalog
from streams.settings import EngineSettings
from streams.standby import Standby
from streams.state_store import (
    DUE_HEADER,
    FORMAT,
    OFFSETS_KEY,
    Held,
    PartitionStore,
    Record,
    StateDir,
    due_header,
    encode_offsets,
    is_offsets,
)
from streams.transactional import BatchResult, Outgoing, partition_for

if TYPE_CHECKING:
    from streams.matcher import TriggerMatcher
    from streams.positions import StartPositions

log = logging.getLogger(__name__)

# A fired timer is sent again this long after (then twice as long, up to five minutes), in case its fire is
# lost (the core rejects a duplicate, and the index drops the entry once the state no longer arms the timer).
# It was 5 s: with a hundred thousand timers due at once, the processor had not decided them when the copies
# came, and deciding copies is what it then spent its time on. Refires also wait while the processor has not
# read, or is still deciding, the last fires sent for the partition (`_refires_wait`).
REFIRE_AFTER_MS = 30_000
# How far ahead the sweep takes timers from the index (`PartitionStore.look_ahead`) and encodes their fires,
# so that finding a burst is done before it is due and firing it on time is only the send. 10 s: reading a
# hundred thousand takes 1-5 s on this 2-core machine, depending on the load; the cost of a longer window is
# memory (about 300 bytes a timer), never lateness (a timer armed inside it is taken at the next sweep).
LOOKAHEAD_MS = 10_000
LOOKAHEAD_SLICE = 2_000  # index entries read between two yields to the event loop (a few ms)
# Timers per `FiredTimers` record: a hundred thousand due at once are 200 records (about 30 KB each). A
# record holds timers due within FIRE_WINDOW_MS of each other and goes out when the last is due: a burst
# spread over a second is still a few hundred records, and no timer is sent more than that much late.
FIRE_BATCH = 500
FIRE_WINDOW_MS = 10
# Timers decided per transaction, at most (give or take one `FiredTimers` record): a burst's fires of one
# partition arrive in one fetch, and deciding all of them in one transaction (25,000 for 100,000 timers on 4
# partitions) held every decoded state and outgoing record until its commit, while the partition's other
# commands waited behind the whole burst. The `FiredTimers` records past the cap are written back to
# `workflow.commands` in the same transaction (`_taken_apart`): consumed and requeued atomically, decided
# by the next transactions (docs/adr/0018). 1,000: a third of a second of CPU per transaction.
FIRE_CAP = 1_000

FORGOTTEN = object()  # overlay marker: the instance's state is dropped (ExpireInstance) in this batch


@dataclass(frozen=True)
class InlineStarts:
    """The trigger topics the processor consumes itself, and what it needs for them (docs/adr/0014).

    Only topics with the partition count of `workflow.commands`: the processor's group subscribes them with
    the commands and results, and the RangePartitionAssignor (streams/transactional.py) assigns each topic
    on its own, splitting its sorted partitions into the same contiguous ranges over the same sorted
    members whenever the counts and the subscriptions are equal; so partition p of a trigger topic goes to
    the worker that owns partition p of the commands and of the state (tests/unit/test_inline_start.py
    checks it on the assignor itself). An event on partition p is matched by the matcher's rule
    (`TriggerMatcher.match`), under instance ids that land on p, and its starts are decided against p's
    states in the transaction that consumes it."""

    topics: frozenset[str]  # prefixed names
    matcher: TriggerMatcher
    positions: StartPositions  # where a trigger partition this worker takes starts (the upgrade rule)


def _nothing() -> None:
    return None


def now_ms() -> int:
    return int(time.time() * 1000)


def dead_letter(codec: Codec, topic: str, record, reason: str, error_type: str, consumer: str) -> Outgoing:
    """The dead letter of `record`, bounded in size (schemas/dlq.py) so that it can always be written."""
    metrics.DLQ_RECORDS.labels(consumer, error_type).inc()
    key, value, _ = dlq.dead_letter(codec.encode, record, reason, error_type, consumer)
    return Outgoing(topic, key, value)


class InstanceProcessor:
    def __init__(self, settings: EngineSettings, catalog: TemplateCatalog, codec: Codec) -> None:
        self.settings = settings
        self.catalog = catalog
        self.codec = codec
        self._payments_topic = settings.topic(PAYMENTS_COMMANDS)  # where payment orders go (ADR 23)
        # the owned partitions' stores (streams/state_store.py): states on disk, a small decoded cache
        self.stores: dict[int, PartitionStore] = {}
        self._dir: StateDir | None = None
        self._timer_producer: AIOKafkaProducer | None = None
        self._offsets: AIOKafkaConsumer | None = None
        self._identity: bytes | None = None
        # changelog records read to bring stores up to date, by kind ("full": from the beginning into an
        # empty store, "delta": after the store's offset); what a restart on the same disk saves shows here
        self.restore_reads: dict[str, int] = {"full": 0, "delta": 0, "standby": 0}
        self.reused_partitions = 0
        # how long assignments took to bring their stores up to date: the last one, and all of them
        self.restore_seconds = 0.0
        self.restore_seconds_total = 0.0
        self.standby = Standby(self) if settings.standby_replicas > 0 else None
        # per partition: the offset after the last `workflow.commands` record `process` took, and the offset
        # of the last `FiredTimers` record the sweep wrote (refires wait until the first passes the second,
        # and the batch that passed it is committed or aborted)
        self._consumed: dict[int, int] = {}
        self._fired: dict[int, int] = {}
        self._deciding: dict[int, float] = {}  # partitions with a batch of commands between process and commit
        self._fired_prefix = SINGLE_OBJECT_MAGIC + codec.fingerprint(FiredTimers)
        # per partition: the store its timers were taken from, and their fires, encoded, by due time
        self._prepared: dict[int, tuple[PartitionStore, int, list[tuple[int, int, bytes, list[Held]]]]] = {}
        self._sequence = itertools.count()
        # the trigger topics whose events this processor starts itself (set by the engine; None: none)
        self.inline: InlineStarts | None = None
        # per partition: the catalog check begun when trigger events were last handed to its lane (`fetched`)
        self._checks: dict[int, asyncio.Future] = {}

    @property
    def states(self) -> dict[int, PartitionStore]:
        """The owned partitions' states (each store behaves as a read-only mapping of instance ids)."""
        return self.stores

    def state_dir(self) -> StateDir:
        if self._dir is None:
            self._dir = StateDir(Path(self.settings.state_dir), self.settings.app_id)
            log.info("instance states are kept under %s", self._dir.path)
        return self._dir

    def open_store(self, partition: int) -> PartitionStore:
        """The partition's local store as it is on disk (a new empty one if there is none, or if it does not
        open: a corrupt store is thrown away, the changelog rebuilds it)."""
        path = self.state_dir().partition(partition)
        try:
            return PartitionStore(path, self.codec, cache_size=self.settings.state_cache)
        except Exception:
            log.warning("the state store %s does not open; it is rebuilt from the changelog", path, exc_info=True)
            shutil.rmtree(path, ignore_errors=True)
            return PartitionStore(path, self.codec, cache_size=self.settings.state_cache)

    # ------------------------------------------------------------------ ownership
    async def assigned(self, partitions: set[int]) -> None:
        """Take the partitions: open each one's local store and read only the changelog written after the
        offset it is current to (all of it into an empty store when it is missing, corrupt, too old, or a
        copy of another cluster's or topic's changelog).

        A worker restarted on the same disk, or one that gets its partitions back after a rebalance, reads
        almost nothing (issue 9.10, issue 15 "State at scale")."""
        warm = await self.standby.take(partitions) if self.standby else {}
        stores = {p: warm[p] if p in warm else self.open_store(p) for p in sorted(partitions)}
        began = time.perf_counter()
        try:
            reads = await self.catch_up(stores)
            self.restore_seconds = round(time.perf_counter() - began, 3)
            self.restore_seconds_total = round(self.restore_seconds_total + self.restore_seconds, 3)
        except BaseException:
            for store in stores.values():
                store.close()
            raise
        self.stores.update(stores)
        if self.standby:
            await self.standby.retarget(set(self.stores))
        reused = sum(1 for kind, _ in reads.values() if kind == "delta")
        self.reused_partitions += reused
        metrics.REUSED_PARTITIONS.inc(reused)
        self._gauge()
        if self.inline is not None:
            await self.inline.positions.place(partitions)  # trigger partitions: the upgrade rule of ADR 14

    async def revoked(self, partitions: set[int]) -> None:
        """Close the partitions' stores, marked current as of now: if they come back (or after a restart),
        only the changelog written after their offset is read."""
        for partition in partitions:
            self._checks.pop(partition, None)
            store = self.stores.pop(partition, None)
            if store is None:
                continue
            store.verified()
            if self.standby:
                self.standby.keep(partition, store)  # warm if it comes back, or until the next retarget
            else:
                store.close()
        self._gauge()

    def offsets_record(self, partition: int, offsets: dict[tuple[str, int], int]) -> Outgoing:
        """The partition's consumed offsets as a changelog record of the batch's transaction (ADR 13)."""
        return Outgoing(self.settings.changelog_topic, OFFSETS_KEY, encode_offsets(offsets), partition=partition)

    def stored_offsets(self, partition: int) -> dict[tuple[str, int], int]:
        """Where the partition's input goes on: the offsets record its store got from the changelog."""
        return self.stores[partition].consumed

    def _gauge(self) -> None:
        metrics.INSTANCES.set(sum(store.cached for store in self.stores.values()))

    async def _consumer(self) -> AIOKafkaConsumer:
        if self._offsets is None:
            self._offsets = AIOKafkaConsumer(bootstrap_servers=self.settings.bootstrap_servers,
                                             enable_auto_commit=False, isolation_level="read_committed")
            await self._offsets.start()
        return self._offsets

    async def identity(self) -> bytes:
        """Which changelog a store copies: the cluster's id, the topic's name and its partition count. With
        the offset range check in `catch_up`, a store left by another cluster or an older incarnation of the
        topic is recognised and rebuilt instead of trusted. (aiokafka's metadata requests predate topic ids;
        a topic recreated with the same name and count and grown past the store's offset is the case this
        cannot see: delete the state directory when you recreate the changelog by hand.)"""
        if self._identity is None:
            consumer = await self._consumer()
            cluster = "?"
            try:
                client = consumer._client
                response = await client.send(client.get_random_node(),
                                             MetadataRequest([self.settings.changelog_topic], False))
                cluster = getattr(response, "cluster_id", None) or "?"
            except Exception:
                log.warning("could not read the cluster id; stores are matched by topic name only", exc_info=True)
            # the partition count too: `flowline repartition` recreates the changelog with more partitions,
            # and a store of the old layout holds instances that now live elsewhere
            self._identity = f"{cluster}/{self.settings.changelog_topic}/{self.settings.partitions}".encode()
        return self._identity

    async def catch_up(self, stores: dict[int, PartitionStore], *, kind_counter: str | None = None
                       ) -> dict[int, tuple[str, int]]:
        """Bring each store up to the changelog's end (committed records only); returns, per partition,
        whether it read the delta or all of it, and how many records. A full read writes the raw bytes in
        batches, without decoding them (each record's due times are in its header)."""
        if not stores:
            return {}
        topic = self.settings.changelog_topic
        tps = {p: TopicPartition(topic, p) for p in stores}
        identity = await self.identity()
        offsets = await self._consumer()
        starts = await offsets.beginning_offsets(list(tps.values()))
        ends = await offsets.end_offsets(list(tps.values()))
        max_age_ms = self.settings.state_max_age_hours * 3_600_000
        now = now_ms()
        begin: dict[int, int] = {}
        kinds: dict[int, str] = {}
        for p, store in stores.items():
            start, end, offset = starts[tps[p]], ends[tps[p]], store.offset
            why = (None if offset is None and store.format is None and start == end else
                   "it is empty" if offset is None else
                   "it is of another format" if store.format != FORMAT else
                   "it copies another cluster or topic" if store.identity != identity else
                   f"its offset {offset} is outside the changelog's [{start}, {end}]" if not start <= offset <= end
                   else "it is older than FLOWLINE_STATE_MAX_AGE_HOURS" if now - store.verified_ms > max_age_ms
                   else "")
            if why:  # tombstones may have been compacted away since: only a full read is safe
                log.info("state store of partition %s is rebuilt from the changelog: %s", p, why)
                store.wipe()
                store.stamp(identity, start)  # an interrupted rebuild goes on from where it got to
            begin[p] = start if why or why is None else offset
            kinds[p] = "full" if why or why is None else "delta"
        read = dict.fromkeys(stores, 0)
        total = sum(ends[tps[p]] - begin[p] for p in stores)
        reported = [0]

        def take(tp: TopicPartition, records: list) -> None:
            stores[tp.partition].apply(
                (Record(r.key, r.value, next((v for k, v in r.headers if k == DUE_HEADER), None)) for r in records),
                records[-1].offset + 1)
            read[tp.partition] += len(records)
            if sum(read.values()) - reported[0] >= 100_000:
                reported[0] = sum(read.values())
                log.info("restoring partitions %s: %d of at most %d changelog records read", sorted(stores),
                         reported[0], total)

        consumer = AIOKafkaConsumer(bootstrap_servers=self.settings.bootstrap_servers, enable_auto_commit=False,
                                    isolation_level="read_committed", auto_offset_reset="earliest",
                                    max_partition_fetch_bytes=4 * 1024 * 1024)
        await consumer.start()
        try:
            consumer.assign(list(tps.values()))
            for p, tp in tps.items():
                consumer.seek(tp, begin[p])
            await asyncio.sleep(0)  # lets the consumer's own tasks start before a stop may cancel them
            await read_to_end(consumer, {tps[p]: ends[tps[p]] for p in stores}, take)
        finally:
            await consumer.stop()
        for p, store in stores.items():
            store.stamp(identity, max(ends[tps[p]], store.offset or 0))
            store.flush()
            counter = kind_counter or kinds[p]
            self.restore_reads[counter] = self.restore_reads.get(counter, 0) + read[p]
            metrics.RESTORE_RECORDS.labels(counter).inc(read[p])
        metrics.RESTORED.inc(sum(read.values()))
        log.info("took partitions %s: %s", sorted(stores),
                 ", ".join(f"p{p} {kinds[p]} {read[p]} records" for p in sorted(stores)))
        return {p: (kinds[p], read[p]) for p in stores}

    async def close(self) -> None:
        if self.standby:
            await self.standby.close()
        for store in self.stores.values():
            store.verified()
            store.close()
        self.stores.clear()
        if self._offsets is not None:
            await self._offsets.stop()
            self._offsets = None
        if self._dir is not None:
            self._dir.release()
            self._dir = None

    # ------------------------------------------------------------------ a batch
    def fetched(self, partition: int, topic: str) -> None:
        """Records of `topic` were just handed to the partition's lane: if they are trigger events, begin
        their catalog check now, while the lane may still be committing (`TemplateCatalog.check_ahead`).

        The lane's next batch holds these events and possibly earlier ones; the latest check replaces the
        one before, so the check a batch uses always began after every trigger event in it was fetched
        (ADR 7). A batch that finds none (its events were taken by an earlier batch's check, or it is a
        retry of single records) asks for one of its own."""
        inline = self.inline
        if inline is not None and topic in inline.topics:
            self._checks[partition] = self.catalog.check_ahead()

    async def process(self, partition: int, records: Sequence) -> BatchResult:
        states = self.stores[partition]
        overlay: dict[str, InstanceState] = {}
        out: list[Outgoing] = []
        settings = self.settings
        inline = self.inline
        # the catalog check of ADR 7 before any trigger event is matched; batches without one do not pay it
        templates = (await inline.matcher.templates(self._checks.pop(partition, None))
                     if inline is not None and any(r.topic in inline.topics for r in records) else None)
        forwarded: list = []  # `FiredTimers` records past the cap: re-queued by this transaction
        records, read_to = self._fired_timers(partition, records, forwarded)
        if read_to is not None:  # refires of the fires before `read_to` wait until this batch is done
            self._consumed[partition] = max(self._consumed.get(partition, 0), read_to)
            self._deciding[partition] = time.monotonic()
        for n, record in enumerate(records, 1):
            if n % 100 == 0:
                await asyncio.sleep(0)  # a long batch must not starve the group heartbeat or the other lanes
            if templates is not None and record.topic in inline.topics:
                # a trigger event: matched by the matcher's rule, its starts decided here, in this transaction
                matched = inline.matcher.match(record, templates, partition=partition)
                if matched.dead_letter is not None:
                    out.append(matched.dead_letter)
                for start in matched.starts:
                    await self._decide(partition, record, start, states, overlay, out)
                continue
            try:
                command = record.command if type(record) is Fire else self.codec.decode(record.value)
            except DecodeError as exc:
                out.append(dead_letter(self.codec, settings.dlq_topic, record, str(exc), "undecodable", "engine"))
                continue
            if not isinstance(command, Command):
                out.append(dead_letter(self.codec, settings.dlq_topic, record,
                                       f"{type(command).__name__} is not a command", "not_a_command", "engine"))
                continue
            await self._decide(partition, record, command, states, overlay, out)
        for record in forwarded:
            out.append(Outgoing(settings.commands_topic, record.key, record.value, partition=partition,
                                headers=tuple(record.headers or ())))
        changes: list[tuple[str, InstanceState | None, bytes | None, bytes | None]] = []
        for n, (instance_id, state) in enumerate(overlay.items(), 1):
            if n % 100 == 0:
                await asyncio.sleep(0)  # thousands of states to encode (a burst of timers) must not stall the loop
            if state is FORGOTTEN:  # a tombstone: the compacted changelog forgets the instance
                changes.append((instance_id, None, None, None))
                out.append(Outgoing(settings.changelog_topic, instance_id.encode(), None, partition=partition))
                continue
            value, due = self.codec.encode(state), due_header(state)
            changes.append((instance_id, state, value, due))
            out.append(Outgoing(settings.changelog_topic, instance_id.encode(), value, partition=partition,
                                headers=((DUE_HEADER, due),)))
        result = BatchResult(records=out)
        # The hooks hold the result (they read what the worker fills in on it), and the result holds them:
        # a reference cycle, which only the cyclic collector frees, and the engine runs it rarely
        # (streams/app.py GC_THRESHOLDS). A batch that had lived through a collection while its transaction
        # was in flight then kept every decoded state and encoded record until a full collection: a burst of
        # 100,000 timeouts grew the worker by 8 KB per timeout, to 1 GB. Whichever hook runs breaks the cycle.
        def settled() -> None:
            result.on_commit = result.on_abort = _nothing

        def commit() -> None:
            """Only now, with the transaction committed, does the batch reach the local store: with the
            consumed offsets and the changelog offset it is current to, in one write batch (an aborted
            transaction writes nothing)."""
            settled()
            self._deciding.pop(partition, None)
            if forwarded:  # the re-queued fires are the partition's last fires: refires wait for them too
                requeued = result.written.get((settings.commands_topic, partition))
                if requeued is not None:
                    self._fired[partition] = max(self._fired.get(partition, -1), requeued)
            if not changes and result.consumed is None:
                return
            last = result.written.get((settings.changelog_topic, partition))
            states.commit(changes, last + 1 if last is not None else None, result.consumed)
            metrics.EXPIRED.inc(sum(1 for change in changes if change[1] is None))
            self._gauge()

        def abort() -> None:  # the lane retries the records, or dead-letters them
            settled()
            self._deciding.pop(partition, None)

        result.on_commit = commit
        result.on_abort = abort
        return result

    def _fired_timers(self, partition: int, records: Sequence, forwarded: list) -> tuple[Iterable, int | None]:
        """(the batch with each `FiredTimers` record taken apart into its `FireTimer` commands (a `Fire` per
        timer, in the record's place), so that each timer is decided, deduplicated and dead-lettered as a
        command of its own, other records left as they are, undecoded; the offset after the batch's last
        `workflow.commands` record: once the batch is done, refires of the fires before it may go
        (`_refires_wait`)).

        The records are taken apart as the loop reaches them, not all at once: a batch of a burst names tens
        of thousands of timers, and decoding them in one go held the event loop for a second. Once `FIRE_CAP`
        timers are taken, the batch's further `FiredTimers` records are put in `forwarded` instead, as they
        are (not decoded): the caller writes them back to the partition's commands."""
        commands_topic, prefix = self.settings.commands_topic, self._fired_prefix
        read_to = None
        fired = False
        for record in records:
            if record.topic == commands_topic:
                read_to = max(read_to or 0, record.offset + 1)
                value = record.value
                fired = fired or (value is not None and (value[:10] == prefix or (
                    value[:1] == b"\0" and self.codec.resolver is not None)))
        return (self._taken_apart(records, forwarded) if fired else records), read_to

    def _taken_apart(self, records: Sequence, forwarded: list) -> Iterator:
        prefix = self._fired_prefix
        taken = 0
        for record in records:
            value = record.value
            batch = None
            if taken >= FIRE_CAP and value is not None and value[:10] == prefix:
                forwarded.append(record)  # decoded (or dead-lettered) by the transaction that takes it
                continue
            if value is not None and (value[:10] == prefix or (value[:1] == b"\0" and self.codec.resolver)):
                with contextlib.suppress(DecodeError):  # undecodable: left for the loop to dead-letter
                    batch = self.codec.decode(value)
            if isinstance(batch, FiredTimers):
                if taken >= FIRE_CAP:  # (a registry's framing: known only once decoded)
                    forwarded.append(record)
                    continue
                taken += len(batch.timers)
                for command in batch.commands():
                    yield Fire(record, command)
            else:
                yield record

    async def _decide(self, partition: int, record, command: Command, states: PartitionStore,
                      overlay: dict[str, InstanceState], out: list[Outgoing]) -> None:
        """Decide one command against the partition's states (as staged by this batch's earlier commands in
        `overlay`), appending what it produces to `out`."""
        settings = self.settings
        key = command.instance_id.encode()
        if is_offsets(key):  # the changelog's offsets record (ADR 13): never an instance's state
            out.append(dead_letter(self.codec, settings.dlq_topic, record,
                                   "the instance id is the changelog's reserved offsets key", "reserved_id",
                                   "engine"))
            return
        home = partition_for(key, settings.partitions)
        if home != partition:
            out.append(dead_letter(
                self.codec, settings.dlq_topic, record,
                f"instance {command.instance_id} belongs to partition {home}, but the record arrived on "
                f"partition {partition}: producers must key commands by instance id", "wrong_partition", "engine"))
            return
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
            return
        try:
            decision = decide(state, command, template, now)
            produced = [Outgoing(settings.events_topic, key, self.codec.encode(event))
                        for event in decision.events]
            produced += [self._effect(effect, key) for effect in decision.effects]
        except Exception as exc:  # a bug must not stop the partition: park the record, keep going
            log.exception("deciding %s failed", command.command_id)
            out.append(dead_letter(self.codec, settings.dlq_topic, record, f"engine error: {exc!r}",
                                   "engine_error", "engine"))
            try:  # last resort: the instance fails and says why, instead of never existing (core rule)
                decision = fail_on_error(state, command, template, now, f"engine error: {exc!r}")
                produced = [Outgoing(settings.events_topic, key, self.codec.encode(event))
                            for event in decision.events]
                produced += [self._effect(effect, key) for effect in decision.effects]
            except Exception:
                log.exception("recording the failure of %s failed too", command.instance_id)
                return
        if decision.forget:
            overlay[command.instance_id] = FORGOTTEN
        elif decision.state is not None and decision.state is not state:
            overlay[command.instance_id] = decision.state
        out.extend(produced)
        metrics.DECISIONS.labels(type(command).__name__,
                                 "rejected" if decision.rejected else "applied").inc()

    def _effect(self, effect: StepRequest | PaymentOrder, key: bytes) -> Outgoing:
        """An effect as the record this transaction writes: a step request to its handler's topic (keyed by
        instance), or a payment order to the payment service's commands (keyed by its idempotency key, as
        the payment service expects every command: docs/adr/0023)."""
        if type(effect) is PaymentOrder:
            return Outgoing(self._payments_topic, effect.idempotency_key.encode(),
                            self.codec.encode(payment_command(effect)))
        return Outgoing(self.settings.step_topic(effect.kind), key, self.codec.encode(effect))

    # ------------------------------------------------------------------ retention
    def expired(self, now: int) -> list[tuple[int, ExpireInstance]]:
        """ExpireInstance commands for finished instances past their retention, per partition (from each
        store's index of finished instances by end time: no state is read)."""
        if self.settings.retention_hours <= 0:
            return []
        cutoff = now - int(self.settings.retention_hours * 3_600_000)
        found = []
        for partition, store in list(self.stores.items()):
            for instance_id, ended_at in store.expired(cutoff):
                found.append((partition, ExpireInstance(
                    command_id=f"expire:{instance_id}:{ended_at}", instance_id=instance_id,
                    issued_at=now, ended_at=ended_at)))
        return found

    # ------------------------------------------------------------------ timers
    def _refires_wait(self, partition: int) -> bool:
        """Has the processor not yet read the last fires the sweep sent for this partition, or is it still
        deciding a batch of them (deciding a burst takes tens of seconds)? Then a refire would only queue a
        copy behind them: refires wait. A fire the processor read and could not commit (dead-lettered) is
        refired. Unknown after a restart (nothing sent yet): they do not wait. A batch that seems to be
        decided for longer than ten refire periods is taken as lost (a bug that raised out of `process`)."""
        fired = self._fired.get(partition)
        if fired is None:
            return False
        began = self._deciding.get(partition)
        deciding = began is not None and time.monotonic() - began < REFIRE_AFTER_MS * 10 / 1000
        return self._consumed.get(partition, 0) <= fired or deciding

    async def _look_ahead(self, until: int, now: int, producer: AIOKafkaProducer) -> None:
        """Take the timers due by `until` from each owned store's index and prepare their fires (`_prepare`),
        a slice at a time, firing what falls due meanwhile."""
        for partition, store in list(self.stores.items()):
            while self.stores.get(partition) is store:  # revoked meanwhile: its store is closed
                found, read = store.look_ahead(until, now, REFIRE_AFTER_MS, limit=LOOKAHEAD_SLICE,
                                               hold_refires=self._refires_wait(partition))
                if found:
                    self._prepare(partition, store, found)
                if read < LOOKAHEAD_SLICE:
                    break
                if (self._next_fire() or until) <= now_ms():
                    await self._fire_due(producer)
                await asyncio.sleep(0)

    def _prepare(self, partition: int, store: PartitionStore, found: list[Held]) -> None:
        """Encode the fires of timers taken ahead of time, now rather than when they are due: `FiredTimers`
        records of up to `FIRE_BATCH` timers due within `FIRE_WINDOW_MS` of each other (the record goes out
        when its last one is due), held until then. `found` is in due order (the index is)."""
        taken = self._prepared.get(partition)
        if taken is None or taken[0] is not store or taken[1] != store.taken_epoch:
            taken = self._prepared[partition] = (store, store.taken_epoch, [])
        heap = taken[2]
        group: list[Held] = []

        def close() -> None:
            due = group[-1].due
            value = self.codec.encode(FiredTimers(
                batch_id=f"{partition}@{due}:{len(heap)}", issued_at=due,
                timers=tuple(DueTimer(instance_id=t.instance_id, timer_id=t.timer_id, fire_at=t.fire_at)
                             for t in group)))
            heapq.heappush(heap, (due, next(self._sequence), value, list(group)))
            group.clear()

        for timer in found:
            if group and (len(group) >= FIRE_BATCH or timer.due - group[0].due > FIRE_WINDOW_MS):
                close()
            group.append(timer)
        close()

    def _next_fire(self) -> int | None:
        """When the earliest prepared fire is due."""
        return min((heap[0][0] for _, _, heap in self._prepared.values() if heap), default=None)

    async def _fire_due(self, producer: AIOKafkaProducer) -> None:
        """Send every prepared fire that is due: per partition, its records in record batches (one produce
        request each), all appended before any is handed to the producer, so that no fire waits behind the
        decisions of the first ones (a record's timestamp is taken when it is appended). Then wait for the
        broker's acknowledgements, for only then is a fire durable (`PartitionStore.fired`). A send that
        fails is tried again at the next round."""
        now = now_ms()
        topic = self.settings.commands_topic
        ready = []
        for partition, (store, epoch, heap) in list(self._prepared.items()):
            if self.stores.get(partition) is not store or store.taken_epoch != epoch:
                del self._prepared[partition]  # handed over since: the timers are in the index, not taken
                continue
            due = []
            while heap and heap[0][0] <= now:
                due.append(heapq.heappop(heap))
            if not due:
                continue
            batches = [producer.create_batch()]
            for _, _, value, _ in due:
                if batches[-1].append(key=None, value=value, timestamp=None) is None:  # full: start another
                    batches.append(producer.create_batch())
                    batches[-1].append(key=None, value=value, timestamp=None)
            ready.append((partition, store, heap, due, batches))
        sends = []
        for partition, store, heap, due, batches in ready:
            try:
                deliveries = [(await producer.send_batch(batch, topic, partition=partition), batch.record_count())
                              for batch in batches]
            except Exception as exc:
                deliveries = exc
            sends.append((partition, store, heap, due, deliveries))
        for partition, store, heap, due, deliveries in sends:
            try:
                if isinstance(deliveries, Exception):
                    raise deliveries
                for delivery, count in deliveries:
                    meta = await delivery
                    self._fired[partition] = max(self._fired.get(partition, -1), meta.offset + count - 1)
            except Exception:
                log.warning("sending the fires of %d timers of partition %s failed; they are sent again",
                            sum(len(timers) for *_, timers in due), partition, exc_info=True)
                retry = now_ms() + self.settings.timer_sweep_ms
                for _, seq, value, timers in due:
                    heapq.heappush(heap, (retry, seq, value, timers))
                continue
            for _, _, _, timers in due:  # a record's worth at a time: tens of thousands would hold the loop
                if self.stores.get(partition) is store:
                    store.fired(timers, now_ms(), REFIRE_AFTER_MS)
                metrics.TIMERS_FIRED.inc(len(timers))
                await asyncio.sleep(0)

    async def sweep_timers(self, stop: asyncio.Event) -> None:
        """Fire due timers: look ahead into the index every `FLOWLINE_TIMER_SWEEP_MS`, and wake at the due
        time of the earliest timer held, so that a fire is late by its send only."""
        producer = AIOKafkaProducer(bootstrap_servers=self.settings.bootstrap_servers, enable_idempotence=True,
                                    linger_ms=self.settings.linger_ms, max_batch_size=1024 * 1024)
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
                await self._look_ahead(now + LOOKAHEAD_MS, now, producer)
                await self._fire_due(producer)
                for gone in set(self._fired) - set(self.stores):
                    del self._fired[gone]  # a partition that comes back starts unknown again
                wake = self._next_fire()
                wait_ms = self.settings.timer_sweep_ms if wake is None else min(
                    self.settings.timer_sweep_ms, max(wake - now_ms(), 0))
                if wait_ms:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), wait_ms / 1000)
        finally:
            await producer.stop()


class Fire:
    """One timer of a `FiredTimers` record, in `process`: its `FireTimer` command, already decoded, and the
    record's own attributes (topic, offset, key, value: what a dead letter of it shows)."""

    __slots__ = ("command", "record")

    def __init__(self, record, command) -> None:
        self.record = record
        self.command = command

    def __getattr__(self, name: str):
        return getattr(self.record, name)
