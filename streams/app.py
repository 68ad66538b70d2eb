"""The engine process: template catalog, trigger matcher, instance processor and timer sweep.

Run it with `flowline engine`; scale by running more of them (up to the partition count): each worker
takes a share of the partitions, restores their states from the changelog and fences any zombie that
still held them. `--role` runs only the matcher or only the processor.

Which worker reads which trigger topic (docs/adr/0014): the processor reads those with the partition count
of `workflow.commands` and starts their events' instances inline; the matcher reads the others (none: it runs
no consumer), or all of them with `FLOWLINE_ENGINE_INLINE_START=off`.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from dataclasses import replace

from aiokafka import AIOKafkaProducer

from schemas.codec import Codec
from schemas.process import run_process, wait_for_kafka
from streams import metrics
from streams.catalog import TemplateCatalog
from streams.health import start_health_server
from streams.matcher import TriggerMatcher
from streams.positions import StartPositions
from streams.processor import InlineStarts, InstanceProcessor, dead_letter
from streams.settings import EngineSettings
from streams.transactional import Outgoing, TransactionalWorker

log = logging.getLogger("flowline.engine")


class Engine:
    def __init__(self, settings: EngineSettings | None = None, *, roles: tuple[str, ...] = ("matcher", "processor")):
        self.settings = settings or EngineSettings()
        self.roles = roles
        self.codec = Codec.from_env()
        self.catalog = TemplateCatalog(bootstrap_servers=self.settings.bootstrap_servers,
                                       topic=self.settings.templates_topic, decode=self.codec.decode)
        self.processor = InstanceProcessor(self.settings, self.catalog, self.codec)
        self.matcher = TriggerMatcher(self.settings, self.catalog, self.codec)
        self.stop_event = asyncio.Event()
        self.workers: list[TransactionalWorker] = []
        self.started = time.monotonic()
        self.max_loop_lag = 0.0
        # the trigger topics started inline by the processor, and those read by the matcher (`_run`)
        self.trigger_topics: tuple[list[str], list[str]] = ([], [])
        self._workers_created = False

    @property
    def ready(self) -> bool:
        """Every worker this engine runs owns its partitions (true for a `--role matcher` engine that has no
        trigger topic to read: it runs no worker at all, ADR 14)."""
        return self._workers_created and all(w.ready.is_set() for w in self.workers)

    def _worker(self, role: str, topics, logic) -> TransactionalWorker:
        s = self.settings
        return TransactionalWorker(bootstrap_servers=s.bootstrap_servers, group_id=s.group(role),
                                   topics=topics, logic=logic, transactional_prefix=s.group(role),
                                   max_batch=s.max_batch, poll_timeout_ms=s.poll_timeout_ms, linger_ms=s.linger_ms,
                                   fetch_wait_ms=s.fetch_wait_ms,
                                   role=role, session_timeout_ms=s.session_timeout_ms,
                                   dead_letter=lambda record, reason, error_type: dead_letter(
                                       self.codec, self.settings.dlq_topic, record, reason, error_type, role))

    async def check_co_partitioning(self) -> None:
        """Commands, results and the state changelog must have one partition count, and the processor must
        know it (it checks every record's home partition): refuse to start on a mismatch rather than
        misroute state."""
        s = self.settings
        names = (s.commands_topic, s.results_topic, s.changelog_topic)
        counts = await self.catalog.partition_counts(names)
        if len(set(counts.values())) != 1 or None in counts.values():
            raise RuntimeError(f"co-partitioning is broken: partition counts {counts}; these topics must exist "
                               "with one count (see docs/runbooks/repartitioning.md)")
        actual = next(iter(counts.values()))
        if actual != s.partitions:
            log.warning("FLOWLINE_PARTITIONS is %d but the topics have %d partitions; using %d",
                        s.partitions, actual, actual)
            self.settings = replace(s, partitions=actual)
            self.processor.settings = self.settings
            self.matcher.settings = self.settings

    async def run(self) -> None:
        health = None
        if self.settings.metrics_port:
            health = await start_health_server(self, self.settings.metrics_port)
        try:
            await self._run()
        finally:
            if health is not None:
                await health.cleanup()

    async def split_trigger_topics(self) -> tuple[list[str], list[str]]:
        """The trigger topics (prefixed names) the processor starts inline, and those left to the matcher.

        Inline: those with the partition count of `workflow.commands` (partition p of each then goes to the
        worker owning partition p of the commands and the state, see `InlineStarts`). The matcher: the
        others, including a topic that does not exist yet, and all of them when inline starts are off.
        Every engine computes this from the same topics and setting, so `--role matcher` and
        `--role processor` in separate processes split the topics the same way."""
        s = self.settings
        names = s.trigger_topic_names
        if not s.inline_start or not names:
            return [], names
        counts = await self.catalog.partition_counts((s.commands_topic, *names))
        commands = counts[s.commands_topic]
        inline = [t for t in names if commands is not None and counts[t] == commands]
        return inline, [t for t in names if t not in inline]

    async def _run(self) -> None:
        if not await wait_for_kafka(self.settings.bootstrap_servers, self.stop_event):
            return  # stopped before the broker ever answered
        await self.catalog.start()
        if "processor" in self.roles:
            await self.check_co_partitioning()
        s = self.settings
        inline, matched = self.trigger_topics = await self.split_trigger_topics()
        tasks = []
        schedule_worker = None
        if "processor" in self.roles:
            worker = self._worker("processor", [s.commands_topic, s.results_topic, *inline], self.processor)
            if inline:
                positions = StartPositions(bootstrap_servers=s.bootstrap_servers, topics=frozenset(inline),
                                           group=s.group("processor"), other_group=s.group("matcher"),
                                           fallback="latest", co_partitioned=True)
                positions.worker = worker
                self.processor.inline = InlineStarts(frozenset(inline), self.matcher, positions)
            self.workers.append(worker)
            tasks.append(asyncio.create_task(worker.run(), name="processor"))
            tasks.append(asyncio.create_task(self.processor.sweep_timers(self.stop_event), name="timers"))
            schedule_worker = None if matched else worker  # no matcher consumer anywhere: the processor's
        if "matcher" in self.roles and matched:
            worker = self._worker("matcher", matched, self.matcher)
            self.matcher.positions = StartPositions(bootstrap_servers=s.bootstrap_servers, topics=frozenset(matched),
                                                    group=s.group("matcher"), other_group=s.group("processor"),
                                                    fallback="earliest")
            self.matcher.positions.worker = worker
            self.workers.append(worker)
            tasks.append(asyncio.create_task(worker.run(), name="matcher"))
            schedule_worker = worker
        elif "matcher" in self.roles:
            log.info("the matcher has no trigger topic to read: the processor starts them all inline")
        if schedule_worker is not None:
            tasks.append(asyncio.create_task(self._schedules(schedule_worker), name="schedules"))
        self._workers_created = True
        tasks.append(asyncio.create_task(self._watch_loop_lag(), name="loop-lag"))
        log.info("engine running roles=%s partitions=%d bootstrap=%s; trigger topics started inline: %s, "
                 "through the matcher: %s", ",".join(self.roles), s.partitions, s.bootstrap_servers,
                 ",".join(inline) or "none", ",".join(matched) or "none")
        try:
            await self.stop_event.wait()
        finally:
            for worker in self.workers:
                worker.stop()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.catalog.stop()
            await self.processor.close()

    async def _watch_loop_lag(self, every: float = 1.0) -> None:
        """Measure how late the event loop wakes up: the group heartbeat runs on this loop, so a stall of
        several seconds (a long synchronous stretch) is what costs a worker its membership. Once a second:
        a stall shows as at least its length minus a second, which is all the several seconds that matter
        need; ten times a second was a tenth of the idle engine's CPU (issue 15)."""
        loop = asyncio.get_running_loop()
        while not self.stop_event.is_set():
            before = loop.time()
            await asyncio.sleep(every)
            lag = loop.time() - before - every
            metrics.LOOP_LAG.observe(max(lag, 0.0))
            self.max_loop_lag = max(self.max_loop_lag, lag)
            if lag > 1.0:
                log.warning("the event loop was blocked for %.1f s", lag)

    async def _schedules(self, worker: TransactionalWorker) -> None:
        """Fire SCHEDULED templates from the engine whose `worker` owns partition 0: the matcher's when it
        consumes anything, else the processor's (all trigger topics inline)."""
        producer = AIOKafkaProducer(bootstrap_servers=self.settings.bootstrap_servers, enable_idempotence=True)
        await producer.start()

        async def send(out: Outgoing) -> None:
            await producer.send_and_wait(out.topic, out.value, key=out.key)

        try:
            await self.matcher.run_schedules(self.stop_event, send, lambda: 0 in worker.producers)
        finally:
            await producer.stop()

    def stop(self) -> None:
        self.stop_event.set()


# The engine's garbage collector collects the young generation every 100,000 allocations (Python's default is
# 700) and the old one ten times less often than by default. A batch of a burst (tens of thousands of timers
# in one transaction) keeps every decoded state and outgoing record alive until it commits, and the default
# thresholds ran a full collection over that growing heap again and again: deciding took 2-4x as long, and a
# collection held the event loop for seconds, long enough to miss the group's session (issue 15, docs/
# performance.md "State at scale"). The engine's objects are acyclic data, freed by reference counting.
GC_THRESHOLDS = (100_000, 50, 100)


def main(roles: tuple[str, ...] = ("matcher", "processor")) -> int:
    gc.set_threshold(*GC_THRESHOLDS)
    engine = Engine(roles=roles)
    return run_process(engine.run, engine.stop)
