"""The engine's copy of every template version: a global table over the compacted `workflow.templates`.

Every worker reads all partitions of the topic (no consumer group), compiles each version once, and keeps
following the topic. Records are keyed `<template_id>:<version>`, so compaction keeps every version a
running instance may still need. `catch_up()` reads up to the current end: the matcher calls it before
every batch of events (a template is matched from the moment the API answered for it), the processor for
a command that names a version published a moment ago.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, TopicPartition

from core.template import CompiledTemplate, Template, compile_template, parse_template
from core.triggers import TriggerIndex
from core.types import WorkflowStatus
from core.validation import validate_template
from schemas.compacted import read_to_end
from schemas.consumers import LongPoll, consumer_options
from streams import metrics

log = logging.getLogger(__name__)

FOLLOW_EVERY_SECONDS = 1.0


def _retrieved(future: asyncio.Future) -> None:
    if not future.cancelled():
        future.exception()


class TemplateCatalog:
    def __init__(self, *, bootstrap_servers: str, topic: str, decode: Callable[[bytes], object]) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.decode = decode
        self.versions: dict[tuple[str, int], CompiledTemplate] = {}
        self.latest: dict[str, int] = {}
        self._index: TriggerIndex | None = None  # of `active()`, built when asked after each change
        self._consumer: AIOKafkaConsumer | None = None
        # asks only for end offsets: on the fetching consumer's connection a ListOffsets request waits behind
        # the fetch long-poll in flight (up to fetch.max.wait.ms, 500 ms), which made every check cost that
        self._offsets: AIOKafkaConsumer | None = None
        self._partitions: list[TopicPartition] = []
        self._task: asyncio.Task | None = None
        self._lock = asyncio.Lock()
        self._asking: asyncio.Task | None = None  # the end offsets request that callers may still join

    def get(self, template_id: str, version: int) -> CompiledTemplate | None:
        return self.versions.get((template_id, version))

    def active(self) -> list[Template]:
        """The newest version of each template, if it is ACTIVE (what triggers may start)."""
        found = []
        for template_id, version in self.latest.items():
            compiled = self.versions.get((template_id, version))
            if compiled and compiled.template.status is WorkflowStatus.ACTIVE:
                found.append(compiled.template)
        return found

    def index(self) -> TriggerIndex:
        """`active()` indexed for matching (core.triggers.TriggerIndex), built once per catalog change."""
        if self._index is None:
            self._index = TriggerIndex(self.active())
        return self._index

    def add(self, record) -> None:
        """Compile one TemplateRecord; an invalid one is logged and skipped (the gateway validates first)."""
        problems = validate_template(record.document)
        if problems:
            log.error("template %s v%s is invalid and was skipped: %s", record.template_id, record.version,
                      "; ".join(f"{p.pointer}: {p.message}" for p in problems))
            return
        template = parse_template(record.document, template_id=record.template_id, version=record.version,
                                  tenant_id=record.tenant_id, status=WorkflowStatus(record.status))
        self.versions[(record.template_id, record.version)] = compile_template(template)
        self._index = None
        if record.version >= self.latest.get(record.template_id, 0):
            self.latest[record.template_id] = record.version

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap_servers, enable_auto_commit=False,
                                    isolation_level="read_committed", auto_offset_reset="earliest",
                                    **consumer_options())
        await consumer.start()
        # A consumer without subscriptions holds no topic metadata; ask the cluster directly (a topic
        # created a moment ago may take a few metadata rounds to appear).
        partitions = None
        for _ in range(50):
            partitions = (await consumer._client.fetch_all_metadata()).partitions_for_topic(self.topic)
            if partitions:
                break
            await asyncio.sleep(0.2)
        if not partitions:
            await consumer.stop()
            raise RuntimeError(f"topic {self.topic} does not exist; start the stack or create the topics first")
        self._partitions = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        consumer.assign(self._partitions)
        await consumer.seek_to_beginning(*self._partitions)
        self._consumer = consumer
        self._offsets = AIOKafkaConsumer(bootstrap_servers=self.bootstrap_servers, enable_auto_commit=False,
                                         isolation_level="read_committed")
        await self._offsets.start()
        await self.catch_up()
        log.info("template catalog loaded %d versions of %d templates", len(self.versions), len(self.latest))
        self._task = asyncio.create_task(self._follow())

    async def partition_counts(self, topics: tuple[str, ...]) -> dict[str, int | None]:
        assert self._consumer is not None
        cluster = await self._consumer._client.fetch_all_metadata()
        found = {t: cluster.partitions_for_topic(t) for t in topics}
        return {t: len(parts) if parts else None for t, parts in found.items()}

    def check_ahead(self) -> asyncio.Future:
        """Begin the catalog check for records fetched before this call, without waiting for its answer.

        Why (issue 15): a lane that is still committing its previous transaction when a poll hands it trigger
        events would otherwise ask for the end offsets only once it takes them, and under load that round
        trip (10-30 ms on the 2-core machine) was a quarter of the engine's cycle for a batch of starts.
        Asked here, as the fetch loop hands the events over, the answer is usually in by the time the lane
        is free. It is still the check of ADR 7 for those events: the request begins after this call, so
        after they were fetched. Pass the result to `catch_up`."""
        return self._end_offsets()

    async def catch_up(self, ends: asyncio.Future | None = None) -> None:
        """Read the topic up to its end as of now: every version published before this call is known after it.

        With `ends` (from `check_ahead`), "now" is when that check was begun instead.

        This is what makes a template usable the moment the API answered for it (docs/adr/0007): the API
        answers only after the broker acknowledged the version, and the matcher calls this before it matches
        a batch of events (each produced after that answer, so fetched after it). The common case costs
        one ListOffsets round trip, shared by the callers of one turn of the event loop (`_end_offsets`), and
        no lock: the follower has usually read everything already."""
        assert self._consumer is not None and self._offsets is not None
        started = time.perf_counter()
        ends = await asyncio.shield(ends if ends is not None else self._end_offsets())
        if not await self._reached(ends):
            async with self._lock:
                await read_to_end(self._consumer, ends, lambda tp, records: self._consume({tp: records}))
        metrics.CATALOG_SYNC_SECONDS.observe(time.perf_counter() - started)

    def _end_offsets(self) -> asyncio.Task:
        """The topic's end offsets from a ListOffsets request that begins after this call: every caller until it
        begins joins it.

        Why: the lanes that one poll woke (several partitions' batches of trigger events) each ask for the
        end offsets in the same turn of the event loop; one request answers them all. That is still the check
        of ADR 7 for each of them: the request is sent after every joined caller called `catch_up`, so after
        its events were fetched, and a caller that comes once the request has begun waits for the next one.
        (Issue 15: one round trip less per lane and batch, in the engine and in the broker.)"""
        if self._asking is None or self._asking.done():  # done before it began: cancelled, never joined again
            self._asking = asyncio.ensure_future(self._ask_end_offsets())
            self._asking.add_done_callback(_retrieved)  # an answer nobody waits for any more must not log as lost
        return self._asking

    async def _ask_end_offsets(self) -> dict[TopicPartition, int]:
        self._asking = None  # it begins: whoever calls from now on gets a request of their own
        assert self._offsets is not None
        metrics.CATALOG_REQUESTS.inc()
        return await self._offsets.end_offsets(self._partitions)

    async def _reached(self, ends: dict[TopicPartition, int]) -> bool:
        assert self._consumer is not None
        for tp, end in ends.items():
            if await self._consumer.position(tp) < end:
                return False
        return True

    def _consume(self, batches) -> None:
        for records in batches.values():
            for record in records:
                if record.value is None:
                    continue
                try:
                    self.add(self.decode(record.value))
                except Exception:
                    log.exception("could not read template record at offset %s", record.offset)

    async def _follow(self) -> None:
        """Keep the catalog current between catch-ups. Nothing waits on it: the matcher and the processor
        catch up themselves before they need a version (`catch_up`), so once a second is plenty; the
        schedules are checked once a second too."""
        assert self._consumer is not None
        poll = LongPoll(self._consumer)
        while True:
            async with self._lock:
                batches = await poll.getmany(timeout_ms=20)
                self._consume(batches)
            await asyncio.sleep(FOLLOW_EVERY_SECONDS)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._consumer:
            await self._consumer.stop()
        if self._offsets:
            await self._offsets.stop()
