"""A consumer group whose every batch commits atomically with what it produced (Kafka transactions).

This is the engine's runtime in place of Faust agents (docs/adr/0002-engine-runtime-on-aiokafka-transactions.md): for
each assigned partition it owns one transactional producer whose id names the partition
(`<app>-<role>-p<N>`), so a worker that takes a partition over fences any zombie still writing for it
(the per-partition fencing model of KIP-98). A batch of records from one partition is handed to a
`PartitionLogic`; the records it returns, the consumed offsets and (for the engine) the state changelog
go into one transaction. A logic with a state changelog (`OffsetsInChangelog`, the instance processor)
keeps the consumed offsets there, as one more record of the transaction, and its partitions resume from
them; any other logic (the matcher) puts them in the transaction with `send_offsets_to_transaction`
(docs/adr/0013-consumed-offsets-in-the-state-changelog.md). If the transaction fails, the logic is told to
forget the batch (nothing is half-applied) and the partition's lane keeps the records and retries them one
at a time: an outage is waited out, and a record that cannot be committed is dead-lettered alone with the
reason (see `Lane`). No failure drops a record.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import KafkaError, ProducerFenced
from aiokafka.partitioner import DefaultPartitioner, murmur2
from aiokafka.producer import sender as aiokafka_sender
from aiokafka.producer.transaction_manager import TransactionState

from schemas.consumers import FetchShape, LongPoll, consumer_options
from schemas.errors import is_transient
from streams import metrics

log = logging.getLogger(__name__)

# How long a transaction's first AddPartitionsToTxn waits before it is sent again after CONCURRENT_TRANSACTIONS
# (the coordinator has answered the previous EndTxn but not yet written its markers). aiokafka waits a fixed
# 20 ms there (`sender.BACKOFF_OVERRIDE`) whatever `retry_backoff_ms` says. A busy lane begins its next
# transaction right after a commit, and at 16 workflows in flight over 2 partitions a fifth of the engine's
# transactions hit that window: 20 ms each, on a hop whose p50 is 10 ms (issue 15, docs/performance.md
# "Where an engine transaction's time goes"). The markers take 1-3 ms, so the first retry goes after 2 ms;
# each further refusal in a row doubles the wait up to aiokafka's 20 ms (as Kafka's Java producer backs off
# exponentially, KIP-580), so markers held up for long (a partition leader away) never turn the lanes into a
# hot loop on the coordinator. Process-wide: every producer here that begins transactions is an engine lane's.
FIRST_ADD_PARTITIONS_RETRY_S = 0.002
if not hasattr(aiokafka_sender, "BACKOFF_OVERRIDE"):  # pragma: no cover - tests/unit/test_txn_backoff.py
    raise ImportError("aiokafka.producer.sender.BACKOFF_OVERRIDE is gone: re-check the first AddPartitionsToTxn's "
                      "retry (streams/transactional.py, FIRST_ADD_PARTITIONS_RETRY_S)")
FIRST_ADD_PARTITIONS_RETRY_MAX_S = aiokafka_sender.BACKOFF_OVERRIDE
_aiokafka_add_partitions_answer = aiokafka_sender.AddPartitionsToTxnHandler.handle_response


def _add_partitions_answer(handler, response):
    """aiokafka's handling of an AddPartitionsToTxn answer, with its first-add wait escalating (see above)."""
    backoff = _aiokafka_add_partitions_answer(handler, response)
    txn = handler._sender._txn_manager
    if backoff == aiokafka_sender.BACKOFF_OVERRIDE:  # the answer was CONCURRENT_TRANSACTIONS to a first add
        refusals = getattr(txn, "_flowline_refusals", 0)
        txn._flowline_refusals = refusals + 1
        metrics.TXN_BUSY_REFUSALS.inc()
        return min(FIRST_ADD_PARTITIONS_RETRY_S * 2 ** refusals, FIRST_ADD_PARTITIONS_RETRY_MAX_S)
    txn._flowline_refusals = 0
    return backoff


aiokafka_sender.AddPartitionsToTxnHandler.handle_response = _add_partitions_answer


@functools.lru_cache(maxsize=16_384)
def _key_hash(key: bytes) -> int:
    """Kafka's murmur2 of a key, as the default partitioner takes it, remembered for the keys used lately.

    Why: aiokafka's murmur2 is pure Python (about 10-30 us for an instance id), and the engine hashes the
    same instance id many times per step: its home check (`partition_for`), then every event, step request
    and changelog record it sends under that key (`CachedPartitioner`). Issue 15 profile: 4.5 % of the
    engine's CPU at 16 workflows in flight was murmur2."""
    return murmur2(key) & 0x7FFFFFFF


def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (Java and aiokafka alike) gives a key."""
    return _key_hash(key) % partitions


class CachedPartitioner(DefaultPartitioner):
    """aiokafka's default partitioner (murmur2 of the key over all partitions; a random available one for no
    key), with the hash of recent keys remembered (`_key_hash`): the same rule, so a record lands where any
    Kafka client would put it."""

    def __call__(self, key, all_partitions, available):
        if key is None:
            return super().__call__(key, all_partitions, available)
        return all_partitions[_key_hash(bytes(key)) % len(all_partitions)]


@dataclass(frozen=True)
class Outgoing:
    topic: str
    key: bytes | None
    value: bytes | None  # None: a tombstone (compacted topics forget the key)
    partition: int | None = None
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass
class BatchResult:
    """What a batch produced, and what to do once its transaction committed or failed."""

    records: list[Outgoing] = field(default_factory=list)
    on_commit: Callable[[], None] = lambda: None
    on_abort: Callable[[], None] = lambda: None
    # filled in before `on_commit` runs: the offset of the last record written to each (topic, partition),
    # so that a store derived from a topic (the engine's on-disk state) can say which offset it is current to
    written: dict[tuple[str, int], int] = field(default_factory=dict)
    # filled in before `on_commit` runs, for an `OffsetsInChangelog` logic: the value of the offsets record
    # the transaction wrote to the changelog (the store keeps it with the states)
    consumed: bytes | None = None


@dataclass(frozen=True)
class Outcome:
    """How one transaction ended: committed, fenced (the partition moved), or failed with the error."""

    committed: bool = False
    fenced: bool = False
    error: BaseException | None = None
    written: dict[tuple[str, int], int] = field(default_factory=dict)
    consumed: bytes | None = None  # the offsets record's value, when the offsets went to the changelog

    @property
    def retriable(self) -> bool:
        """An outage (broker away, timeout) rather than something about the records themselves."""
        return is_transient(self.error)


COMMITTED = Outcome(committed=True)
FENCED = Outcome(fenced=True)


class Lane:
    """The records fetched for one partition and not yet committed, and the task that commits them.

    No record leaves the lane except in a committed transaction: as the consumed offset of its output, or
    as its dead letter. A failed transaction does not rewind the consumer (a rewind races the fetches that
    are already under way, and dropping what they bring loses records); the lane keeps the failed records
    and retries them one at a time, so that a record that cannot be committed is found and dead-lettered
    alone, with the reason, while an outage is simply waited out. When the lane is closed (the partition
    is revoked), what it still holds is uncommitted: the partition's next owner reads it from the offsets
    the last committed transaction stored.
    """

    def __init__(self, partition: int, worker: TransactionalWorker) -> None:
        self.partition = partition
        self._worker = worker
        self._pending: dict[TopicPartition, list] = {}
        self._ready = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = asyncio.Event()
        self.task = asyncio.create_task(self._run(), name=f"lane-p{partition}")

    @property
    def backlog(self) -> int:
        return sum(len(rs) for rs in self._pending.values())

    def offer(self, tp: TopicPartition, records: list) -> None:
        self._pending.setdefault(tp, []).extend(records)
        self._ready.set()

    async def _run(self) -> None:
        while not self._closing.is_set():
            await self._ready.wait()
            self._ready.clear()
            while self._pending and not self._closing.is_set():
                parts = list(self._pending.items())
                self._pending = {}
                self._idle.clear()
                try:
                    outcome = await self._worker._transact(self.partition, parts)
                    if not outcome.committed:
                        await self._isolate(parts, outcome)
                finally:
                    self._idle.set()

    async def _isolate(self, parts: list[tuple[TopicPartition, list]], first: Outcome) -> None:
        """Commit the records of a failed batch one at a time; dead-letter each one that cannot be.

        An outage (broker away) is retried with backoff for as long as it lasts; a fenced producer is
        replaced after a session timeout (if the partition really moved, the lane is closed before that);
        any other failure is retried `attempts_before_dead_letter` times, then the record's dead letter is
        committed in its place."""
        singles = [(tp, [r]) for tp, r in ordered(parts)]
        for single in singles:
            outcome = first if len(singles) == 1 else await self._worker._transact(self.partition, [single])
            failures = 1
            backoff = 0.2
            while not outcome.committed:
                if self._closing.is_set():
                    return  # uncommitted: the next owner (or this worker, after a rejoin) reads it again
                if outcome.fenced:
                    await self._sleep(self._worker.session_timeout_ms / 1000)
                    self._worker._broken.add(self.partition)
                elif outcome.retriable or failures < self._worker.attempts_before_dead_letter:
                    await self._sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                    failures += 0 if outcome.retriable else 1
                else:
                    outcome = await self._worker._dead_letter(self.partition, single, outcome.error)
                    if not outcome.committed:
                        failures = 0  # the dead letter could not be written either: try the record again
                    continue
                if not self._closing.is_set():
                    outcome = await self._worker._transact(self.partition, [single])

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)

    async def close(self) -> None:
        """Drop what is not yet in a transaction, let the running one finish, stop."""
        self._pending.clear()
        self._closing.set()
        self._ready.set()
        await self._idle.wait()
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


def ordered(parts: list[tuple[TopicPartition, list]]) -> list[tuple[TopicPartition, object]]:
    """The records of a batch in the order they are processed (by timestamp across topics)."""
    flat = [(tp, r) for tp, rs in parts for r in rs]
    if len(parts) > 1:
        flat.sort(key=lambda pair: pair[1].timestamp)
    return flat


class PartitionLogic(Protocol):
    async def assigned(self, partitions: set[int]) -> None: ...

    async def revoked(self, partitions: set[int]) -> None: ...

    async def process(self, partition: int, records: Sequence) -> BatchResult: ...

    # optional: `fetched(partition, topic)`, called as the fetch loop hands records of `topic` to the
    # partition's lane, for work that may begin before the lane takes them (the processor's catalog check)


@runtime_checkable
class OffsetsInChangelog(Protocol):
    """A logic whose partitions have a state changelog keeps their consumed offsets in it (ADR 13).

    Why: `send_offsets_to_transaction` costs every transaction two more sequential coordinator round trips
    (AddOffsetsToTxn, TxnOffsetCommit) and a marker on `__consumer_offsets`; one small record on a partition
    the transaction writes anyway costs none. The offsets and the states are then one atomic write, and a
    partition's store (restored, delta-restored or standby-followed) knows where its input goes on."""

    def offsets_record(self, partition: int, offsets: dict[tuple[str, int], int]) -> Outgoing:
        """The changelog record that holds the partition's consumed offsets ((topic, partition) -> the next
        offset to read, for every input partition it consumed)."""
        ...

    def stored_offsets(self, partition: int) -> dict[tuple[str, int], int]:
        """The consumed offsets the partition's store holds, once `assigned` brought it up to date (empty: the
        changelog has none yet, e.g. the first start after the upgrade: the group's offsets are used)."""
        ...


class TransactionalWorker:
    GROUP_COMMIT_TIMEOUT_S = 5.0  # a group commit (monitoring only, ADR 13) never holds up a revocation longer

    def __init__(self, *, bootstrap_servers: str, group_id: str, topics: Sequence[str], logic: PartitionLogic,
                 transactional_prefix: str, max_batch: int = 500, poll_timeout_ms: int = 50, linger_ms: int = 1,
                 fetch_wait_ms: int = 500,
                 role: str = "engine", session_timeout_ms: int = 10_000,
                 dead_letter: Callable[[object, str, str], Outgoing] | None = None,
                 attempts_before_dead_letter: int = 3, group_commit_every_s: float = 1.0) -> None:
        self.dead_letter = dead_letter
        self.attempts_before_dead_letter = attempts_before_dead_letter
        self.session_timeout_ms = session_timeout_ms
        self.bootstrap_servers = bootstrap_servers
        self.group_id = group_id
        self.topics = list(topics)
        self.logic = logic
        self.transactional_prefix = transactional_prefix
        self.max_batch = max_batch
        self.poll_timeout_ms = poll_timeout_ms
        self.fetch_wait_ms = fetch_wait_ms
        self.linger_ms = linger_ms
        self.role = role
        self.producers: dict[int, AIOKafkaProducer] = {}
        self.consumer: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()
        self._lanes: dict[int, Lane] = {}
        self._paused: set[TopicPartition] = set()
        self.revocations = 0  # partitions taken away by rebalances (a burst must cause none)
        self._broken: set[int] = set()  # partitions whose producer could not abort: replaced before next use
        self._stopping = asyncio.Event()
        self.ready = asyncio.Event()
        # Offsets in the changelog (ADR 13): per owned partition, the consumed offsets its last committed
        # transaction stored, and the ones not yet committed to the group. The group's offsets are for
        # monitoring (consumer lag) and for the first start after the upgrade: they are committed outside
        # the transactions, after them, at most every `group_commit_every_s`, so they may lag, never lead.
        self.offsets_in_changelog = isinstance(logic, OffsetsInChangelog)
        self.group_commit_every_s = group_commit_every_s
        self._consumed: dict[int, dict[tuple[str, int], int]] = {}
        self._group_due: dict[TopicPartition, int] = {}

    # ------------------------------------------------------------------ rebalancing
    class _Listener(ConsumerRebalanceListener):
        def __init__(self, worker: TransactionalWorker) -> None:
            self.worker = worker

        async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
            if revoked:
                metrics.REVOCATIONS.labels(self.worker.role).inc(len(revoked))
                self.worker.revocations += len(revoked)
            await self.worker._revoke({tp.partition for tp in revoked})

        async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
            await self.worker._assign({tp.partition for tp in assigned})

    async def _assign(self, partitions: set[int]) -> None:
        async with self._lock:
            new = sorted(partitions - set(self.producers))
            producers = {p: self._new_producer(p) for p in new}
            # init_transactions fences a zombie that still holds the partition, before we read its state
            await asyncio.gather(*(producer.start() for producer in producers.values()))
            self.producers.update(producers)
            if new:
                await self.logic.assigned(set(new))
            starts = await self._start_offsets(new) if self.offsets_in_changelog else {}
            # no await from here until the lanes exist: what is fetched from now on starts at these positions
            for tp, offset in starts.items():
                self.consumer.seek(tp, offset)
            for p in new:
                self._lanes[p] = Lane(p, self)
            metrics.OWNED_PARTITIONS.labels(self.role).set(len(self.producers))
            log.info("%s owns partitions %s", self.role, sorted(self.producers))
        self.ready.set()

    async def _start_offsets(self, partitions: Sequence[int]) -> dict[TopicPartition, int]:
        """Where each input partition of `partitions` resumes: the offset the partition's store holds (the
        changelog's truth, ADR 13). Where it holds none, the consumer starts as it would anyway: at the
        group's committed offset, else at the topic's beginning.

        The group's offset is the later one only when it was committed by something else than this worker
        after the store's record: an engine of a version before ADR 13 (a downgrade, then this again), or an
        operator moving the group forward. Then the group's offset wins, so nothing is decided twice.
        Otherwise the group lags the changelog and catches up with it at the next group commit."""
        assert self.consumer is not None
        assignment = self.consumer.assignment()
        stored = {p: {TopicPartition(t, n): o for (t, n), o in self.logic.stored_offsets(p).items()}
                  for p in partitions}
        ours = [tp for offsets in stored.values() for tp in offsets if tp in assignment]
        committed = dict(zip(ours, await asyncio.gather(*(self.consumer.committed(tp) for tp in ours)),
                             strict=True))
        starts: dict[TopicPartition, int] = {}
        for p, offsets in stored.items():
            consumed = {}
            for tp, offset in offsets.items():
                group = committed.get(tp)
                start = max(offset, group) if group is not None else offset
                consumed[(tp.topic, tp.partition)] = start
                if tp in assignment:
                    starts[tp] = start
                    if group is None or group < start:
                        self._group_due[tp] = start
            self._consumed[p] = consumed
            if offsets:
                log.info("%s partition %s resumes at its stored offsets %s", self.role, p, consumed)
        return starts

    async def _commit_group(self, partitions: set[int] | None = None) -> None:
        """Commit the consumed offsets of committed transactions to the group (monitoring only, ADR 13)."""
        consumer = self.consumer
        due = {tp: o for tp, o in self._group_due.items() if partitions is None or tp.partition in partitions}
        if consumer is None or not due:
            return
        for tp in due:
            del self._group_due[tp]
        done = False
        try:
            assigned = consumer.assignment()
            due = {tp: o for tp, o in due.items() if tp in assigned}
            if due:  # bounded: aiokafka retries a retriable error (a broker away) for as long as it lasts
                await asyncio.wait_for(consumer.commit(due), self.GROUP_COMMIT_TIMEOUT_S)
            done = True
        except Exception as exc:  # a rebalance or an outage: the group lags a little longer, nothing more
            log.debug("committing the group offsets %s failed: %r", due, exc)
        finally:
            if not done:  # failed or cancelled: kept for the next commit, unless a newer offset came meanwhile
                for tp, offset in due.items():
                    self._group_due.setdefault(tp, offset)

    async def _commit_group_every(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.group_commit_every_s)
            await self._commit_group()

    def _new_producer(self, partition: int) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=self.bootstrap_servers,
            transactional_id=f"{self.transactional_prefix}-p{partition}",
            enable_idempotence=True,
            partitioner=CachedPartitioner(),
            linger_ms=self.linger_ms,
            max_batch_size=256 * 1024,
            # a transaction begun right after the previous commit gets CONCURRENT_TRANSACTIONS until the
            # markers are written; retrying after 100 ms (the default) would dominate step latency. (The
            # transaction's first AddPartitionsToTxn, the usual case, waits FIRST_ADD_PARTITIONS_RETRY_S
            # instead: see there.)
            retry_backoff_ms=5,
        )

    async def _revoke(self, partitions: set[int]) -> None:
        async with self._lock:
            gone = partitions & set(self.producers)
            # let each lane finish the transaction it is in, then stop it: nothing half-done is left
            for p in sorted(gone):
                lane = self._lanes.pop(p, None)
                if lane is not None:
                    await lane.close()
            if gone and self.offsets_in_changelog:
                await self._commit_group(gone)  # the partitions are still ours: the group gets their last
                for p in gone:
                    self._consumed.pop(p, None)
            if gone:
                await self.logic.revoked(gone)
            for p in sorted(gone):
                producer = self.producers.pop(p)
                try:
                    await producer.stop()
                except KafkaError:
                    log.warning("producer for partition %s did not stop cleanly", p, exc_info=True)
            metrics.OWNED_PARTITIONS.labels(self.role).set(len(self.producers))

    # ------------------------------------------------------------------ the loop
    async def run(self) -> None:
        """Fetch, and hand each partition's records to that partition's lane.

        Every owned partition has a lane: a task that takes everything fetched for the partition since its
        last transaction and commits it as the next one. Lanes run concurrently, so a slow commit on one
        partition never delays another, and records that arrive while a lane commits form its next batch.
        """
        busy = FetchShape(min_bytes=1, wait_ms=self.fetch_wait_ms)  # on every workflow's path
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers,
            group_id=self.group_id,
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            partition_assignment_strategy=(RangePartitionAssignor,),
            max_poll_records=self.max_batch,
            # long poll: the broker answers a fetch as soon as one byte is there (fetch_min_bytes=1), and
            # holds an empty one this long instead of the client asking again every few milliseconds;
            # longer once the worker is idle (schemas/consumers.py says why only then)
            **consumer_options(shape=busy),
            # how soon a dead worker's partitions move: the broker's floor is group.min.session.timeout.ms
            session_timeout_ms=self.session_timeout_ms,
            heartbeat_interval_ms=max(self.session_timeout_ms // 4, 500),
        )
        consumer.subscribe(self.topics, listener=self._Listener(self))
        self.consumer = consumer
        await consumer.start()
        group_commits = (asyncio.create_task(self._commit_group_every(), name=f"{self.role}-group-offsets")
                         if self.offsets_in_changelog else None)
        poll = LongPoll(consumer, shape=busy)
        fetched = getattr(self.logic, "fetched", None)
        try:
            while not self._stopping.is_set():
                batches = await poll.getmany(timeout_ms=self.poll_timeout_ms, max_records=self.max_batch)
                for tp, records in batches.items():
                    lane = self._lanes.get(tp.partition)
                    if lane is None:
                        # fetched while the partition is still being set up (restoring its state) or torn
                        # down: never drop a record, rewind so that it is fetched again
                        if tp in consumer.assignment():
                            consumer.seek(tp, records[0].offset)
                        continue
                    lane.offer(tp, records)
                    if fetched is not None:
                        fetched(tp.partition, tp.topic)
                    if lane.backlog > self.max_batch * 4:
                        consumer.pause(tp)
                        self._paused.add(tp)
                if self._paused:
                    for tp in list(self._paused):
                        lane = self._lanes.get(tp.partition)
                        if lane is None or lane.backlog <= self.max_batch:
                            self._paused.discard(tp)
                            if tp in consumer.assignment():
                                consumer.resume(tp)
        finally:
            if group_commits is not None:
                group_commits.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await group_commits
            await self._shutdown()

    async def _transact(self, partition: int, parts: list[tuple[TopicPartition, list]]) -> Outcome:
        """Process one partition's batch and commit its output with its offsets, in one transaction."""
        records = [r for _, r in ordered(parts)]
        started = time.perf_counter()
        try:
            result = await self.logic.process(partition, records)
        except Exception as exc:  # the logic parks bad records itself; the lane isolates what escapes it
            log.exception("processing %d records of partition %s failed", len(records), partition)
            metrics.TRANSACTION_FAILURES.labels(self.role).inc()
            return Outcome(error=exc)
        outcome = await self._commit(partition, parts, result.records)
        if outcome.committed:
            result.written = outcome.written
            result.consumed = outcome.consumed
            result.on_commit()
            metrics.BATCH_SECONDS.labels(self.role).observe(time.perf_counter() - started)
            metrics.RECORDS.labels(self.role).inc(len(records))
        else:
            result.on_abort()
            if not outcome.fenced:
                log.warning("transaction of %d records of partition %s failed: %r", len(records), partition,
                            outcome.error)
        return outcome

    async def _dead_letter(self, partition: int, single: tuple[TopicPartition, list], error) -> Outcome:
        """Commit the dead letter of one record that cannot be committed otherwise, with its offset."""
        tp, (record,) = single
        reason = f"{self.role}: the record's transaction failed: {type(error).__name__}: {error}"
        if self.dead_letter is None:
            raise RuntimeError(f"{self.role} has no dead-letter topic; cannot park {tp}@{record.offset}")
        out = self.dead_letter(record, reason, "uncommittable")
        outcome = await self._commit(partition, [single], [out])
        if outcome.committed:
            log.error("record %s/%s@%s dead-lettered: %s", tp.topic, tp.partition, record.offset, reason[:500])
            metrics.RECORDS.labels(self.role).inc()
        return outcome

    async def _commit(self, partition: int, parts: list[tuple[TopicPartition, list]],
                      outgoing: list[Outgoing]) -> Outcome:
        assert self.consumer is not None
        offsets = {tp: max(r.offset for r in rs) + 1 for tp, rs in parts}
        consumed = stored = None
        if self.offsets_in_changelog:
            # every input partition's offset, not only this batch's: the changelog keeps only the last record
            consumed = {**self._consumed.get(partition, {}),
                        **{(tp.topic, tp.partition): offset for tp, offset in offsets.items()}}
            stored = self.logic.offsets_record(partition, consumed)
            outgoing = [*outgoing, stored]
        try:
            producer = await self._producer(partition)
            await producer.begin_transaction()
            sent = []
            for n, out in enumerate(outgoing, 1):
                sent.append(await producer.send(out.topic, out.value, key=out.key, partition=out.partition,
                                                headers=list(out.headers) or None))
                if n % 200 == 0:
                    await asyncio.sleep(0)  # thousands of sends never suspend: let the heartbeat run
            # The offsets go into the transaction (AddOffsetsToTxn, then TxnOffsetCommit) while the records are
            # still on their way: two round trips that used to wait for the produce acks now overlap them
            # (issue 15: each round trip here is paid by every hop of every workflow). Nothing is committed
            # before both are done and every record was acknowledged: a record the broker refuses (too large
            # for its topic, ...) fails only its own delivery future, and aiokafka would still commit the rest
            # with the offsets, so the gather below must see every record's outcome before the commit.
            # (An `OffsetsInChangelog` logic's offsets are one of the records instead: no round trip at all.)
            offsets_added = (None if consumed is not None else
                             asyncio.ensure_future(producer.send_offsets_to_transaction(offsets, self.group_id)))
            try:
                metadata = await asyncio.gather(*sent)
            except BaseException:
                # the abort below goes through the producer's own queue, after the offsets request; only
                # retrieve the task's outcome so that its error is not reported as never retrieved
                if offsets_added is not None:
                    offsets_added.add_done_callback(lambda task: task.cancelled() or task.exception())
                raise
            if offsets_added is not None:
                await offsets_added
            await producer.commit_transaction()
        except ProducerFenced:
            log.warning("the producer of partition %s was fenced; its records stay uncommitted", partition)
            metrics.TRANSACTION_FAILURES.labels(self.role).inc()
            return FENCED
        except Exception as exc:
            metrics.TRANSACTION_FAILURES.labels(self.role).inc()
            producer = self.producers.get(partition)
            txn = producer._txn_manager if producer is not None else None
            try:
                if txn is not None and txn.state in (TransactionState.IN_TRANSACTION,
                                                     TransactionState.ABORTABLE_ERROR):
                    await producer.abort_transaction()
            except ProducerFenced:
                return FENCED
            except Exception:
                log.warning("abort failed for partition %s", partition, exc_info=True)
            # A producer whose record the broker refused is in FATAL_ERROR, or its idempotent sequence numbers
            # no longer match the broker's (OutOfOrderSequenceNumber for every later record): whatever the
            # failure, a new producer with the same transactional id takes over before the next transaction.
            log.info("the producer of partition %s (state %s) is replaced after a failed transaction", partition,
                     txn.state.name if txn is not None else "-")
            self._broken.add(partition)
            return Outcome(error=exc)
        written: dict[tuple[str, int], int] = {}
        for meta in metadata:
            where = (meta.topic, meta.partition)
            written[where] = max(written.get(where, -1), meta.offset)
        if consumed is not None:
            self._consumed[partition] = consumed
            self._group_due.update(offsets)
            return Outcome(committed=True, written=written, consumed=stored.value)
        return Outcome(committed=True, written=written) if written else COMMITTED

    async def _producer(self, partition: int) -> AIOKafkaProducer:
        """The partition's transactional producer; a new one (same id) after a failed transaction."""
        if partition in self._broken:
            old = self.producers[partition]
            with contextlib.suppress(Exception):
                await old.stop()
            producer = self._new_producer(partition)
            try:
                await producer.start()  # init_transactions: aborts what the old one left open
            except Exception:
                with contextlib.suppress(Exception):
                    await producer.stop()
                raise
            self.producers[partition] = producer
            self._broken.discard(partition)
        return self.producers[partition]

    def stop(self) -> None:
        self._stopping.set()

    async def _shutdown(self) -> None:
        if self.consumer is not None:
            if self.offsets_in_changelog:
                # the lanes finish their transactions first, so that the group gets the last offsets while
                # the consumer is still a member (what `flowline repartition` checks after a clean stop)
                for p in sorted(self._lanes):
                    await self._lanes[p].close()
                await self._commit_group()
            try:
                await self.consumer.stop()
            except Exception:
                log.warning("consumer did not stop cleanly", exc_info=True)
        await self._revoke(set(self.producers))
