"""Run real engines against the real broker, on topics of their own, and watch what they publish.

Each `EngineWorld` gets a unique topic prefix and application id, so tests never see each other's
records. Engines run in-process (`start_engine`) or as separate processes (`spawn_engine`, so a test can
SIGKILL one); both use the production code paths unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from core import events as ev
from core.commands import Command, RecordPaymentResult
from core.effects import StepRequest
from core.payments import operation_key_parts
from core.triggers import instance_id_for, instance_id_on
from schemas import topics as topics_mod
from schemas.codec import Codec
from schemas.records import PaymentCommand, TemplateRecord, TransferEvent
from streams.app import Engine
from streams.settings import EngineSettings
from streams.transactional import partition_for

REPO = Path(__file__).resolve().parents[2]


def event_instance_id(template_id: str, event_id: str, partitions: int, topic: str = topics_mod.PAYMENTS_TRANSFERS,
                      key: str | None = None, *, inline: bool = True) -> str:
    """The instance id an event keyed `key` (default: its event id) on an unprefixed trigger `topic` of
    `partitions` partitions starts `template_id` under (streams.matcher.TriggerMatcher.start_command)."""
    source = f"event:{topic}:{event_id}"
    if not inline:
        return instance_id_for(template_id, source)
    partition = partition_for((key if key is not None else event_id).encode(), partitions)
    return instance_id_on(template_id, source, partition, partitions,
                          lambda instance_id: partition_for(instance_id.encode(), partitions))


@dataclass
class EngineWorld:
    bootstrap: str
    partitions: int = 3
    prefix: str = field(default_factory=lambda: f"it{uuid.uuid4().hex[:8]}.")
    codec: Codec = field(default_factory=Codec)
    events: dict[str, list[ev.Event]] = field(default_factory=lambda: defaultdict(list))
    requests: dict[str, list[StepRequest]] = field(default_factory=lambda: defaultdict(list))
    payments: dict[str, list[PaymentCommand]] = field(default_factory=lambda: defaultdict(list))
    dlq: list[Any] = field(default_factory=list)
    _tasks: list[asyncio.Task] = field(default_factory=list)
    _engines: list[Engine] = field(default_factory=list)
    _procs: list[subprocess.Popen] = field(default_factory=list)
    # the engines' on-disk state stores (streams/state_store.py), removed with the world
    state_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="flowline-state-")))

    @property
    def app_id(self) -> str:
        return f"flowline-{self.prefix.rstrip('.')}"

    def topic(self, name: str) -> str:
        return self.prefix + name

    def event_instance_id(self, template_id: str, event_id: str, topic: str = topics_mod.PAYMENTS_TRANSFERS,
                          key: str | None = None, *, inline: bool = True) -> str:
        """The instance an event sent by `send_transfer`/`send_raw` (keyed by `key`, default its event id)
        starts: started inline (docs/adr/0014) its id lands on the event's partition; through the matcher
        (`inline=False`: inline starts off, or a topic of another partition count) it is today's id."""
        return event_instance_id(template_id, event_id, self.partitions, topic, key, inline=inline)

    def settings(self, **overrides: Any) -> EngineSettings:
        return EngineSettings(**{"bootstrap_servers": self.bootstrap, "app_id": self.app_id,
                                 "partitions": self.partitions, "topic_prefix": self.prefix, "timer_sweep_ms": 100,
                                 "state_dir": str(self.state_dir), **overrides})

    def env(self) -> dict[str, str]:
        return {**os.environ, "FLOWLINE_KAFKA_BOOTSTRAP": self.bootstrap, "FLOWLINE_ENGINE_ID": self.app_id,
                "FLOWLINE_PARTITIONS": str(self.partitions), "FLOWLINE_TOPIC_PREFIX": self.prefix,
                "FLOWLINE_TIMER_SWEEP_MS": "100", "FLOWLINE_ENGINE_STATE_DIR": str(self.state_dir)}

    # ------------------------------------------------------------------ setup / teardown
    async def __aenter__(self) -> EngineWorld:
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic

        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            specs = [replace(spec, name=self.topic(spec.name)) for spec in topics_mod.TOPICS]
            await admin.create_topics([NewTopic(s.name, s.num_partitions(self.partitions), 1,
                                                topic_configs=s.topic_configs()) for s in specs])
        finally:
            await admin.close()
        self.producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, enable_idempotence=True)
        await self.producer.start()
        self._tasks.append(asyncio.create_task(self._watch()))
        return self

    async def __aexit__(self, *exc: object) -> None:
        for engine in self._engines:
            engine.stop()
        engine_tasks = [t for t in self._tasks if t is not self._tasks[0]]
        if engine_tasks:
            await asyncio.wait(engine_tasks, timeout=15)
        for proc in self._procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        await self.producer.stop()
        shutil.rmtree(self.state_dir, ignore_errors=True)

    # ------------------------------------------------------------------ engines
    async def start_engine(self, **overrides: Any) -> Engine:
        engine = Engine(self.settings(**overrides))
        self._engines.append(engine)
        task = asyncio.create_task(engine.run())
        self._tasks.append(task)
        await self._wait_owned(engine, task)
        return engine

    async def _wait_owned(self, engine: Engine, task: asyncio.Task, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if task.done():
                task.result()  # raises what stopped the engine
                raise AssertionError("engine stopped before it owned its partitions")
            if engine.ready:  # the matcher runs a worker only when it has a trigger topic to read
                return
            await asyncio.sleep(0.05)
        raise AssertionError("engine did not get its partitions in time")

    async def stop_engine(self, engine: Engine) -> None:
        engine.stop()
        for _ in range(200):
            if all(w.consumer is None or w.consumer._closed for w in engine.workers):
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)

    def spawn_engine(self, log_name: str, extra_env: dict[str, str] | None = None) -> subprocess.Popen:
        log = open(REPO / ".flowline" / f"{log_name}.log", "wb")  # noqa: SIM115 - kept open for the child
        proc = subprocess.Popen([sys.executable, "-m", "streams"], cwd=REPO, env={**self.env(), **(extra_env or {})},
                                stdout=log,
                                stderr=subprocess.STDOUT)
        self._procs.append(proc)
        return proc

    # ------------------------------------------------------------------ input
    async def publish_template(self, template_id: str, document: dict, *, version: int = 1, tenant_id: str = "t1",
                               status: str = "ACTIVE") -> None:
        record = TemplateRecord(template_id=template_id, version=version, tenant_id=tenant_id,
                                name=document["name"], status=status, document=document,
                                updated_at=int(time.time() * 1000))
        await self.producer.send_and_wait(self.topic(topics_mod.WORKFLOW_TEMPLATES), self.codec.encode(record),
                                          key=f"{template_id}:{version}".encode())

    async def send_transfer(self, event: TransferEvent) -> None:
        await self.producer.send_and_wait(self.topic(topics_mod.PAYMENTS_TRANSFERS), self.codec.encode(event),
                                          key=event.event_id.encode())

    async def send_raw(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        await self.producer.send_and_wait(self.topic(topic), value, key=key)

    async def send_command(self, command: Command, topic: str = topics_mod.WORKFLOW_COMMANDS) -> None:
        await self.producer.send_and_wait(self.topic(topic), self.codec.encode(command),
                                          key=command.instance_id.encode())

    # ------------------------------------------------------------------ output
    async def _watch(self) -> None:
        watched = [topics_mod.WORKFLOW_EVENTS, topics_mod.WORKFLOW_DLQ, topics_mod.PAYMENTS_COMMANDS,
                   *(topics_mod.step_topic(k) for k in topics_mod.STEP_KINDS)]
        consumer = AIOKafkaConsumer(*[self.topic(t) for t in watched], bootstrap_servers=self.bootstrap,
                                    isolation_level="read_committed", auto_offset_reset="earliest",
                                    enable_auto_commit=False, metadata_max_age_ms=1000)  # sees grown topics
        await consumer.start()
        read_up_to: dict[tuple[str, int], int] = {}
        try:
            while True:
                # bounded, and yielding between batches: the watcher shares its event loop with in-process
                # engines, and decoding a whole burst at once would stall their group heartbeats
                batches = await consumer.getmany(timeout_ms=100, max_records=500)
                await asyncio.sleep(0)
                for records in batches.values():
                    for record in records:
                        # a topic that grows makes a group-less consumer re-read from the start: count each
                        # record once, so the harness never reports a duplicate that is not in the topic
                        where = (record.topic, record.partition)
                        if record.offset <= read_up_to.get(where, -1):
                            continue
                        read_up_to[where] = record.offset
                        value = self.codec.decode(record.value)
                        if record.topic.endswith(topics_mod.WORKFLOW_DLQ):
                            self.dlq.append(value)
                        elif isinstance(value, StepRequest):
                            self.requests[value.instance_id].append(value)
                        elif isinstance(value, PaymentCommand):  # the engine's own payment orders (ADR 23)
                            parts = operation_key_parts(value.idempotency_key)
                            if parts is not None:
                                self.payments[parts[0]].append(value)
                        else:
                            self.events[value.instance_id].append(value)
        finally:
            await consumer.stop()

    def log_text(self, instance_id: str) -> str:
        return "\n".join(f"  {e.seq:3d} {type(e).__name__} {_brief(e)}" for e in self.events[instance_id])

    async def wait_for_event(self, instance_id: str, event_type: type, timeout: float = 30, **match: Any) -> ev.Event:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.events.get(instance_id, []):
                if isinstance(event, event_type) and all(getattr(event, k) == v for k, v in match.items()):
                    return event
            await asyncio.sleep(0.05)
        raise AssertionError(f"no {event_type.__name__} {match} for {instance_id} within {timeout}s; log:\n"
                             f"{self.log_text(instance_id)}")

    async def wait_for_request(self, instance_id: str, step: int, timeout: float = 30) -> StepRequest:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for request in self.requests.get(instance_id, []):
                if request.step == step:
                    return request
            await asyncio.sleep(0.05)
        raise AssertionError(f"no step request for step {step} of {instance_id}; log:\n{self.log_text(instance_id)}")

    async def wait_for_payment(self, instance_id: str, timeout: float = 30, count: int = 1) -> PaymentCommand:
        """The engine's `count`-th payment order for the instance, as the payment service reads it."""
        await self.wait_until(lambda: len(self.payments.get(instance_id, [])) >= count, timeout,
                              f"payment order {count} of {instance_id}")
        return self.payments[instance_id][count - 1]

    def orders_for(self, instance_id: str, step: int) -> list[PaymentCommand]:
        """The engine's payment orders for one step of the instance, as the payment service reads them."""
        return [o for o in self.payments.get(instance_id, [])
                if (operation_key_parts(o.idempotency_key) or ("", 0))[1] == step]

    async def pay(self, instance_id: str, step: int, status: str = "succeeded", output: Any = None,
                  error: str = "") -> PaymentCommand:
        """Answer the instance's payment order as the payment service would, reported as the relay does."""
        await self.wait_until(lambda: self.orders_for(instance_id, step),
                              message=f"a payment order for step {step} of {instance_id}")
        order = self.orders_for(instance_id, step)[-1]
        await self.send_command(RecordPaymentResult(
            command_id=f"payment:{order.idempotency_key}", instance_id=instance_id, step=step,
            operation_key=order.idempotency_key, status=status, output=output, error=error),
            topic=topics_mod.WORKFLOW_STEP_RESULTS)
        return order

    async def wait_until(self, predicate, timeout: float = 30, message: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{message} not reached within {timeout}s")


def _brief(event: ev.Event) -> str:
    fields = {k: v for k, v in vars(event).items() if k not in ("instance_id", "seq", "at", "command_id")}
    text = ", ".join(f"{k}={v!r}" for k, v in fields.items())
    return text[:200]
