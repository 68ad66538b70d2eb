"""The engine process: template catalog, trigger matcher, instance processor and timer sweep.

Run it with `flowline engine`; scale by running more of them (up to the partition count): each worker
takes a share of the partitions, restores their states from the changelog and fences any zombie that
still held them. `--role` runs only the matcher or only the processor.
"""

from __future__ import annotations

import asyncio
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
from streams.processor import InstanceProcessor, dead_letter
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

    def _worker(self, role: str, topics, logic) -> TransactionalWorker:
        s = self.settings
        return TransactionalWorker(bootstrap_servers=s.bootstrap_servers, group_id=f"{s.app_id}-{role}",
                                   topics=topics, logic=logic, transactional_prefix=f"{s.app_id}-{role}",
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

    async def _run(self) -> None:
        if not await wait_for_kafka(self.settings.bootstrap_servers, self.stop_event):
            return  # stopped before the broker ever answered
        await self.catalog.start()
        if "processor" in self.roles:
            await self.check_co_partitioning()
        s = self.settings
        tasks = []
        if "processor" in self.roles:
            worker = self._worker("processor", [s.commands_topic, s.results_topic], self.processor)
            self.workers.append(worker)
            tasks.append(asyncio.create_task(worker.run(), name="processor"))
            tasks.append(asyncio.create_task(self.processor.sweep_timers(self.stop_event), name="timers"))
        if "matcher" in self.roles:
            worker = self._worker("matcher", s.trigger_topic_names, self.matcher)
            self.workers.append(worker)
            tasks.append(asyncio.create_task(worker.run(), name="matcher"))
            tasks.append(asyncio.create_task(self._schedules(), name="schedules"))
        tasks.append(asyncio.create_task(self._watch_loop_lag(), name="loop-lag"))
        log.info("engine running roles=%s partitions=%d bootstrap=%s", ",".join(self.roles), s.partitions,
                 s.bootstrap_servers)
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

    async def _schedules(self) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.settings.bootstrap_servers, enable_idempotence=True)
        await producer.start()

        async def send(out: Outgoing) -> None:
            await producer.send_and_wait(out.topic, out.value, key=out.key)

        try:
            await self.matcher.run_schedules(self.stop_event, send)
        finally:
            await producer.stop()

    def stop(self) -> None:
        self.stop_event.set()


def main(roles: tuple[str, ...] = ("matcher", "processor")) -> int:
    engine = Engine(roles=roles)
    return run_process(engine.run, engine.stop)
