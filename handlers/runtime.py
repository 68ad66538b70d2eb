"""The at-least-once consumer every handler process runs: requests in, results out, offsets after.

One consumer group per step kind (`flowline-handler-<kind>`) on `workflow.steps.<kind>`, read_committed
(the engine writes requests inside transactions). Up to `concurrency` requests run at once, but an
offset is committed only when every earlier record of its partition is done, so a crash redelivers
exactly the unfinished tail: never a gap. A result is published (acks=all, idempotent producer) before its
offset can be committed; a redelivered request is harmless because every receiver gets the request's
idempotency key and the engine drops a second result for the same attempt.

Undecodable requests, and requests whose result cannot be published (refused by the broker as too large,
not encodable), go to `workflow.dlq` with the original bytes and the reason and never stop the partition. A handler
that raises reports `failed` (retryable): the engine's retry policy, not this loop, decides what next.

The approval handler's consumer fetches in the trailing shape (ADR 22, `TRAILING_KINDS`): it reports no
step result (an approval step waits for decisions or its timer, never for the notices), so a fetch that
waits up to 50 ms for more requests while the stack is busy costs no step anything, and saves a fetch and a
batch per approval. Every other kind's result is on its workflow's path and is fetched at the first byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from core.commands import ReportStepResult
from core.effects import StepRequest
from handlers import metrics
from handlers.results import failed
from handlers.settings import HandlerSettings
from schemas import dlq
from schemas.codec import Codec, DecodeError, EncodeError
from schemas.consumers import AT_ONCE, POLL_MS, TRAILING, FetchShape, LongPoll, consumer_options
from schemas.errors import is_transient
from schemas.process import wait_for_kafka

log = logging.getLogger(__name__)

Handle = Callable[[StepRequest], Awaitable[ReportStepResult | None]]


def now_ms() -> int:
    return int(time.time() * 1000)


class OffsetTracker:
    """The records of one partition in flight; `finish` says how far the partition may be committed."""

    def __init__(self) -> None:
        self._started: deque[int] = deque()
        self._finished: set[int] = set()
        self.revoked = False

    def begin(self, offset: int) -> None:
        self._started.append(offset)

    def finish(self, offset: int) -> int | None:
        """Mark `offset` done; return the new commit position (next offset to read) if it moved."""
        self._finished.add(offset)
        position = None
        while self._started and self._started[0] in self._finished:
            done = self._started.popleft()
            self._finished.discard(done)
            position = done + 1
        return position

    def __len__(self) -> int:
        return len(self._started)


# the step kinds whose handler no step waits for (see the module's why)
TRAILING_KINDS = frozenset({"approval"})


def fetch_shape(kind: str) -> FetchShape:
    """How a kind's consumer fetches while busy: TRAILING if no step waits for it, else at the first byte."""
    return TRAILING if kind in TRAILING_KINDS else AT_ONCE


class HandlerRuntime:
    def __init__(self, kind: str, handle: Handle, settings: HandlerSettings, *, codec: Codec | None = None,
                 producer: AIOKafkaProducer | None = None) -> None:
        self.kind = kind
        self.shape = fetch_shape(kind)
        self.handle = handle
        self.settings = settings
        self.codec = codec or Codec.from_env()
        self.topic = settings.request_topic(kind)
        self.group_id = settings.group_id(kind)
        self._producer = producer
        self._own_producer = producer is None
        self.consumer: AIOKafkaConsumer | None = None
        self._semaphore = asyncio.Semaphore(settings.concurrency)
        self._trackers: dict[TopicPartition, OffsetTracker] = {}
        self._to_commit: dict[TopicPartition, int] = {}
        self._tasks: dict[TopicPartition, set[asyncio.Task]] = {}
        self._commit_lock = asyncio.Lock()
        self._commit_due = asyncio.Event()  # set when a position waits to be committed
        self._stopping = asyncio.Event()
        self.ready = asyncio.Event()

    # ------------------------------------------------------------------ rebalancing
    class _Listener(ConsumerRebalanceListener):
        def __init__(self, runtime: HandlerRuntime) -> None:
            self.runtime = runtime

        async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
            await self.runtime._revoke(revoked)

        async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
            for tp in assigned:
                self.runtime._trackers[tp] = OffsetTracker()
            self.runtime.ready.set()

    async def _revoke(self, revoked: list[TopicPartition]) -> None:
        """Let the partitions' requests finish (briefly), commit what is done, forget the rest."""
        pending = [t for tp in revoked for t in self._tasks.get(tp, ())]
        if pending:
            await asyncio.wait(pending, timeout=10)
        await self._commit()
        for tp in revoked:
            tracker = self._trackers.pop(tp, None)
            if tracker is not None:
                tracker.revoked = True
            self._to_commit.pop(tp, None)

    # ------------------------------------------------------------------ the loop
    async def run(self) -> None:
        s = self.settings
        if not await wait_for_kafka(s.bootstrap_servers, self._stopping):
            return  # stopped before the broker ever answered
        if self._producer is None:
            # no linger: a result is on its workflow's path, and the engine's lane begins its next transaction
            # with what has arrived; a result held 2 ms missed that start and waited a whole transaction more
            # (issue 15: the result -> engine hop 15-17 -> 11 ms p50 at 16 in flight, and no more CPU)
            self._producer = AIOKafkaProducer(bootstrap_servers=s.bootstrap_servers, enable_idempotence=True,
                                              linger_ms=0)
            await self._producer.start()
        consumer = AIOKafkaConsumer(
            bootstrap_servers=s.bootstrap_servers, group_id=self.group_id, enable_auto_commit=False,
            isolation_level="read_committed", auto_offset_reset="earliest", session_timeout_ms=s.session_timeout_ms,
            heartbeat_interval_ms=max(s.session_timeout_ms // 5, 500), max_poll_records=s.concurrency,
            **consumer_options(shape=self.shape),
        )
        consumer.subscribe([self.topic], listener=self._Listener(self))
        self.consumer = consumer
        await consumer.start()
        committer = asyncio.create_task(self._commit_periodically())
        poll = LongPoll(consumer, shape=self.shape)
        log.info("handler %s consuming %s as %s (concurrency %d)", self.kind, self.topic, self.group_id,
                 s.concurrency)
        try:
            while not self._stopping.is_set():
                batches = await poll.getmany(timeout_ms=POLL_MS, max_records=s.concurrency)
                for tp, records in batches.items():
                    for record in records:
                        await self._semaphore.acquire()
                        tracker = self._trackers.get(tp)
                        if tracker is None:  # revoked while we waited for a slot
                            self._semaphore.release()
                            break
                        tracker.begin(record.offset)
                        task = asyncio.create_task(self._process(tp, tracker, record))
                        self._tasks.setdefault(tp, set()).add(task)
                        task.add_done_callback(self._tasks[tp].discard)
        finally:
            committer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await committer
            await self._drain()
            with contextlib.suppress(Exception):
                await consumer.stop()
            if self._own_producer:
                with contextlib.suppress(Exception):
                    await self._producer.stop()

    def stop(self) -> None:
        self._stopping.set()

    async def _drain(self, grace: float = 15.0) -> None:
        tasks = [t for ts in self._tasks.values() for t in ts]
        if tasks:
            await asyncio.wait(tasks, timeout=grace)
        with contextlib.suppress(Exception):
            await self._commit()

    async def _commit_periodically(self) -> None:
        """Commit at most every `commit_interval_ms`, and only when a position moved: an idle handler
        does not wake up for nothing (issue 15)."""
        while True:
            await self._commit_due.wait()
            await asyncio.sleep(self.settings.commit_interval_ms / 1000)
            self._commit_due.clear()
            try:
                await self._commit()
            except KafkaError:
                log.warning("offset commit failed; will retry", exc_info=True)

    async def _commit(self) -> None:
        async with self._commit_lock:
            if not self._to_commit or self.consumer is None:
                return
            offsets, self._to_commit = self._to_commit, {}
            try:
                await self.consumer.commit(offsets)
            except Exception:
                for tp, offset in offsets.items():  # keep the newer of the two positions
                    if tp in self._trackers:
                        self._to_commit[tp] = max(offset, self._to_commit.get(tp, 0))
                if self._to_commit:
                    self._commit_due.set()  # retried after the next interval
                raise

    # ------------------------------------------------------------------ one record
    async def _process(self, tp: TopicPartition, tracker: OffsetTracker, record: Any) -> None:
        started = time.perf_counter()
        metrics.IN_FLIGHT.labels(self.kind).inc()
        try:
            try:
                request = self.codec.decode(record.value, StepRequest)
            except DecodeError as exc:
                await self._dead_letter(record, str(exc), "undecodable")
            else:
                try:
                    await self._handle(request)
                except Undeliverable as exc:
                    # the result itself cannot be written (too large, does not encode): retrying cannot help,
                    # and leaving the request unfinished would hold back every commit behind it for good
                    await self._dead_letter(record, f"its result could not be published: {exc}", "unpublishable")
                metrics.LATENCY.labels(self.kind).observe(time.perf_counter() - started)
        except Exception:  # could not publish (the broker is gone and we are stopping): leave it uncommitted
            log.exception("request at %s offset %s was not finished; it will be redelivered", tp, record.offset)
            return
        finally:
            metrics.IN_FLIGHT.labels(self.kind).dec()
            self._semaphore.release()
        position = tracker.finish(record.offset)
        if position is not None and not tracker.revoked:
            self._to_commit[tp] = position
            self._commit_due.set()

    async def _handle(self, request: StepRequest) -> None:
        metrics.REQUESTS.labels(self.kind).inc()
        if request.attempt > 1:
            metrics.RETRIES.labels(self.kind, "attempt").inc()
        try:
            result = await self.handle(request)
        except Exception as exc:
            log.exception("%s handler failed on %s", self.kind, request.request_id)
            result = failed(request, f"{self.kind} handler error: {type(exc).__name__}", retryable=True)
        if result is None:
            metrics.OUTCOMES.labels(self.kind, "none").inc()
            return
        try:
            value = self.codec.encode(result)
        except EncodeError as exc:
            raise Undeliverable(f"{type(exc).__name__}: {exc}") from exc
        await self._publish(self.settings.results_topic, result.instance_id.encode(), value)
        metrics.OUTCOMES.labels(self.kind, result.outcome).inc()

    async def _publish(self, topic: str, key: bytes | None, value: bytes) -> None:
        assert self._producer is not None
        delay = 0.2
        while True:
            try:
                await self._producer.send_and_wait(topic, value, key=key)
                return
            except KafkaError as exc:
                if not is_transient(exc):
                    raise Undeliverable(f"{type(exc).__name__}: {exc}") from exc
                if self._stopping.is_set():
                    raise
                metrics.RETRIES.labels(self.kind, "publish").inc()
                log.warning("publishing to %s failed; retrying in %.1fs", topic, delay, exc_info=True)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _dead_letter(self, record: Any, reason: str, error_type: str) -> None:
        # bounded (schemas/dlq.py): it can always be written
        key, value, letter = dlq.dead_letter(self.codec.encode, record, reason, error_type, self.group_id)
        await self._publish(self.settings.dlq_topic, key, value)
        metrics.DLQ.labels(self.kind, error_type).inc()
        log.warning("request at %s/%s offset %s sent to the DLQ: %s", record.topic, record.partition, record.offset,
                    letter.reason[:500])


class Undeliverable(Exception):
    """A record that no retry will get published (refused by the broker for what it is, or not encodable)."""
