"""A consumer group whose every batch commits atomically with what it produced (Kafka transactions).

This is the engine's runtime in place of Faust agents (docs/adr/0002-engine-runtime-on-aiokafka-transactions.md): for
each assigned partition it owns one transactional producer whose id names the partition
(`<app>-<role>-p<N>`), so a worker that takes a partition over fences any zombie still writing for it
(the per-partition fencing model of KIP-98). A batch of records from one partition is handed to a
`PartitionLogic`; the records it returns, the consumed offsets and (for the engine) the state changelog
go into one transaction. If the transaction fails, the logic is told to forget the batch and the consumer
rewinds to the batch's first offsets, so nothing is half-applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import KafkaError, ProducerFenced
from aiokafka.partitioner import murmur2

from streams import metrics

log = logging.getLogger(__name__)


def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (Java and aiokafka alike) gives a key."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


@dataclass(frozen=True)
class Outgoing:
    topic: str
    key: bytes | None
    value: bytes | None  # None: a tombstone (compacted topics forget the key)
    partition: int | None = None


@dataclass
class BatchResult:
    """What a batch produced, and what to do once its transaction committed or failed."""

    records: list[Outgoing] = field(default_factory=list)
    on_commit: Callable[[], None] = lambda: None
    on_abort: Callable[[], None] = lambda: None


class Lane:
    """The records fetched for one partition and not yet committed, and the task that commits them."""

    def __init__(self, partition: int, commit) -> None:
        self.partition = partition
        self._commit = commit
        self._pending: dict[TopicPartition, list] = {}
        self._ready = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.task = asyncio.create_task(self._run(), name=f"lane-p{partition}")

    @property
    def backlog(self) -> int:
        return sum(len(rs) for rs in self._pending.values())

    def offer(self, tp: TopicPartition, records: list) -> None:
        self._pending.setdefault(tp, []).extend(records)
        self._ready.set()

    async def _run(self) -> None:
        while True:
            await self._ready.wait()
            self._ready.clear()
            if not self._pending:
                continue
            parts = list(self._pending.items())
            self._pending = {}
            self._idle.clear()
            try:
                if not await self._commit(self.partition, parts):
                    self._pending.clear()  # rewound or fenced: what was fetched meanwhile comes again
            finally:
                self._idle.set()

    async def close(self) -> None:
        """Drop what is not yet in a transaction, let the running one finish, stop."""
        self._pending.clear()
        await self._idle.wait()
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


class PartitionLogic(Protocol):
    async def assigned(self, partitions: set[int]) -> None: ...

    async def revoked(self, partitions: set[int]) -> None: ...

    async def process(self, partition: int, records: Sequence) -> BatchResult: ...


class TransactionalWorker:
    def __init__(self, *, bootstrap_servers: str, group_id: str, topics: Sequence[str], logic: PartitionLogic,
                 transactional_prefix: str, max_batch: int = 500, poll_timeout_ms: int = 50, linger_ms: int = 1,
                 role: str = "engine", session_timeout_ms: int = 10_000) -> None:
        self.session_timeout_ms = session_timeout_ms
        self.bootstrap_servers = bootstrap_servers
        self.group_id = group_id
        self.topics = list(topics)
        self.logic = logic
        self.transactional_prefix = transactional_prefix
        self.max_batch = max_batch
        self.poll_timeout_ms = poll_timeout_ms
        self.linger_ms = linger_ms
        self.role = role
        self.producers: dict[int, AIOKafkaProducer] = {}
        self.consumer: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()
        self._lanes: dict[int, Lane] = {}
        self._paused: set[TopicPartition] = set()
        self._stopping = asyncio.Event()
        self.ready = asyncio.Event()

    # ------------------------------------------------------------------ rebalancing
    class _Listener(ConsumerRebalanceListener):
        def __init__(self, worker: TransactionalWorker) -> None:
            self.worker = worker

        async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
            await self.worker._revoke({tp.partition for tp in revoked})

        async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
            await self.worker._assign({tp.partition for tp in assigned})

    async def _assign(self, partitions: set[int]) -> None:
        async with self._lock:
            new = sorted(partitions - set(self.producers))
            producers = {p: AIOKafkaProducer(
                bootstrap_servers=self.bootstrap_servers,
                transactional_id=f"{self.transactional_prefix}-p{p}",
                enable_idempotence=True,
                linger_ms=self.linger_ms,
                max_batch_size=256 * 1024,
                # a transaction begun right after the previous commit gets CONCURRENT_TRANSACTIONS until
                # the markers are written; retrying after 100 ms (the default) would dominate step latency
                retry_backoff_ms=5,
            ) for p in new}
            # init_transactions fences a zombie that still holds the partition, before we read its state
            await asyncio.gather(*(producer.start() for producer in producers.values()))
            self.producers.update(producers)
            if new:
                await self.logic.assigned(set(new))
            for p in new:
                self._lanes[p] = Lane(p, self._transact)
            metrics.OWNED_PARTITIONS.labels(self.role).set(len(self.producers))
            log.info("%s owns partitions %s", self.role, sorted(self.producers))
        self.ready.set()

    async def _revoke(self, partitions: set[int]) -> None:
        async with self._lock:
            gone = partitions & set(self.producers)
            # let each lane finish the transaction it is in, then stop it: nothing half-done is left
            for p in sorted(gone):
                lane = self._lanes.pop(p, None)
                if lane is not None:
                    await lane.close()
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
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers,
            group_id=self.group_id,
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            partition_assignment_strategy=(RangePartitionAssignor,),
            max_poll_records=self.max_batch,
            fetch_max_wait_ms=min(self.poll_timeout_ms, 10),
            # how soon a dead worker's partitions move: the broker's floor is group.min.session.timeout.ms
            session_timeout_ms=self.session_timeout_ms,
            heartbeat_interval_ms=max(self.session_timeout_ms // 4, 500),
        )
        consumer.subscribe(self.topics, listener=self._Listener(self))
        self.consumer = consumer
        await consumer.start()
        try:
            while not self._stopping.is_set():
                batches = await consumer.getmany(timeout_ms=self.poll_timeout_ms, max_records=self.max_batch)
                for tp, records in batches.items():
                    lane = self._lanes.get(tp.partition)
                    if lane is None:
                        # fetched while the partition is still being set up (restoring its state) or torn
                        # down: never drop a record, rewind so that it is fetched again
                        if tp in consumer.assignment():
                            consumer.seek(tp, records[0].offset)
                        continue
                    lane.offer(tp, records)
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
            await self._shutdown()

    async def _transact(self, partition: int, parts: list[tuple[TopicPartition, list]]) -> bool:
        """One transaction for one partition's batch; False if the batch was dropped or rewound."""
        assert self.consumer is not None
        records = [r for _, rs in parts for r in rs]
        if len(parts) > 1:
            records.sort(key=lambda r: r.timestamp)
        started = time.perf_counter()
        try:
            result = await self.logic.process(partition, records)
        except Exception:  # the logic parks bad records itself; this is an outage (e.g. the broker away)
            log.exception("processing %d records of partition %s failed; retrying them", len(records), partition)
            for tp, rs in parts:
                self.consumer.seek(tp, rs[0].offset)
            await asyncio.sleep(1.0)
            return False
        producer = self.producers[partition]
        offsets = {tp: rs[-1].offset + 1 for tp, rs in parts}
        try:
            await producer.begin_transaction()
            for out in result.records:
                await producer.send(out.topic, out.value, key=out.key, partition=out.partition)
            await producer.send_offsets_to_transaction(offsets, self.group_id)
            await producer.commit_transaction()
        except ProducerFenced:
            log.warning("partition %s was taken over by another worker; dropping its batch", partition)
            result.on_abort()
            return False
        except Exception:
            log.exception("transaction for partition %s failed; rewinding %d records", partition, len(records))
            result.on_abort()
            try:
                await producer.abort_transaction()
            except Exception:
                log.warning("abort failed for partition %s", partition, exc_info=True)
            for tp, rs in parts:
                self.consumer.seek(tp, rs[0].offset)
            metrics.TRANSACTION_FAILURES.labels(self.role).inc()
            await asyncio.sleep(0.5)
            return False
        result.on_commit()
        metrics.BATCH_SECONDS.labels(self.role).observe(time.perf_counter() - started)
        metrics.RECORDS.labels(self.role).inc(len(records))
        return True

    def stop(self) -> None:
        self._stopping.set()

    async def _shutdown(self) -> None:
        if self.consumer is not None:
            try:
                await self.consumer.stop()
            except Exception:
                log.warning("consumer did not stop cleanly", exc_info=True)
        await self._revoke(set(self.producers))
