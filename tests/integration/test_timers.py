"""Timers at scale on the real broker (issue 15, docs/performance.md "State at scale").

The sweep takes timers from the index ahead of their due time and fires those of one partition as a few
`FiredTimers` records; the processor decides each timer as its own `FireTimer`. Whatever happens between
the fire and the decision, every timer is decided exactly once:
- a burst due in the same millisecond goes out as one record per partition, each timer decided once;
- the engine killed with SIGKILL as the fires go out: the next engine decides every timer once, without
  waiting for a refire;
- the transaction deciding the fires aborts (the changelog refuses the states) until the record is
  dead-lettered: the refire brings every timer back, each decided once;
- a burst larger than `FIRE_CAP` on one partition is decided over several transactions, none deciding more
  than the cap (plus one record's worth), the rest requeued with it: each timer still decided once.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from core import events as ev
from core.commands import FiredTimers, FireTimer, StartInstance
from schemas import topics
from streams import processor as processor_mod
from streams.state_store import is_offsets
from tests.integration.engine_harness import EngineWorld

pytestmark = pytest.mark.asyncio(loop_scope="session")

BURST = {
    "name": "Burst",
    "trigger_type": "manual",
    "steps": [
        {"type": "wait", "name": "Until", "config": {"until": "{{trigger.at}}"}},
        {"type": "condition", "name": "Done", "config": {"expression": "true", "if_true": "complete"}},
    ],
}


async def start_burst(world: EngineWorld, prefix: str, count: int, due_in_s: float) -> tuple[list[str], int]:
    """`count` instances whose wait ends at the same millisecond, `due_in_s` from now; once all wait."""
    at = int(time.time() * 1000 + due_in_s * 1000)
    ids = [f"wfi_{prefix}_{n:04d}" for n in range(count)]
    for instance_id in ids:
        await world.producer.send(world.topic(topics.WORKFLOW_COMMANDS), world.codec.encode(StartInstance(
            command_id=f"start:{instance_id}", instance_id=instance_id, template_id="tpl_burst",
            template_version=1, tenant_id="t1", trigger={"at": at})), key=instance_id.encode())
    await world.producer.flush()
    await world.wait_until(lambda: all(any(isinstance(e, ev.WaitStarted) for e in world.events.get(i, ()))
                                       for i in ids), timeout=60, message="every instance waits")
    return ids, at


def completions(world: EngineWorld, ids: list[str]) -> int:
    return sum(1 for i in ids if any(isinstance(e, ev.InstanceCompleted) for e in world.events.get(i, ())))


def assert_each_decided_once(world: EngineWorld, ids: list[str]) -> None:
    for instance_id in ids:
        events = world.events[instance_id]
        seqs = [e.seq for e in events if e.seq]
        assert seqs == list(range(1, len(seqs) + 1)), f"{instance_id}: {seqs}\n{world.log_text(instance_id)}"
        kinds = Counter(type(e).__name__ for e in events)
        assert kinds["StepSucceeded"] == 1 and kinds["InstanceCompleted"] == 1, world.log_text(instance_id)


async def fires(world: EngineWorld) -> list:
    """Every fire on `workflow.commands` (`FiredTimers` records and lone `FireTimer` commands)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=world.bootstrap, enable_auto_commit=False)
    await consumer.start()
    found = []
    try:
        tps = [TopicPartition(world.topic(topics.WORKFLOW_COMMANDS), p) for p in range(world.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    value = world.codec.decode(record.value)
                    if isinstance(value, FiredTimers | FireTimer):
                        found.append(value)
    finally:
        await consumer.stop()
    return found


async def burst_decided_once(world: EngineWorld, tag: str, timeout: float) -> list[str]:
    """300 instances whose timers fall due in the same millisecond, run to completion by an engine started
    here; each timer decided exactly once. Returns the instance ids."""
    await world.publish_template("tpl_burst", BURST)
    await world.start_engine()
    ids, _ = await start_burst(world, tag, 300, due_in_s=6)
    await world.wait_until(lambda: completions(world, ids) == len(ids), timeout=timeout,
                           message="every instance completed")
    await asyncio.sleep(1)  # a duplicate would arrive now
    assert_each_decided_once(world, ids)
    return ids


async def test_a_burst_due_in_one_millisecond_is_one_record_per_partition_and_each_timer_decided_once(
        kafka_bootstrap, monkeypatch):
    monkeypatch.setattr(processor_mod, "LOOKAHEAD_MS", 3_000)  # every timer is armed before the sweep looks
    async with EngineWorld(kafka_bootstrap, partitions=3) as world:
        ids = await burst_decided_once(world, "burst", timeout=60)
        found = await fires(world)
        assert all(isinstance(f, FiredTimers) for f in found), "a lone FireTimer was sent"
        assert len(found) <= world.partitions, [len(f.timers) for f in found]
        assert sorted(t.instance_id for f in found for t in f.timers) == ids
        assert not any(isinstance(e, ev.CommandRejected) for i in ids for e in world.events[i])


async def test_a_sigkill_as_the_fires_go_out_loses_no_timer(kafka_bootstrap):
    async with EngineWorld(kafka_bootstrap, partitions=3) as world:
        await world.publish_template("tpl_burst", BURST)
        first = world.spawn_engine("timers-kill-first")
        await asyncio.sleep(4)  # let it join the group and take the partitions
        ids, due = await start_burst(world, "kill", 600, due_in_s=8)
        watcher = AIOKafkaConsumer(world.topic(topics.WORKFLOW_COMMANDS), bootstrap_servers=world.bootstrap,
                                   auto_offset_reset="latest", enable_auto_commit=False)
        await watcher.start()
        try:
            seen = False
            deadline = time.monotonic() + 60
            while not seen and time.monotonic() < deadline:
                for records in (await watcher.getmany(timeout_ms=50)).values():
                    seen = seen or any(isinstance(world.codec.decode(r.value), FiredTimers) for r in records)
        finally:
            await watcher.stop()
        assert seen, "no fire was sent"
        first.send_signal(signal.SIGKILL)  # as the fires go out, before (most of) their decisions commit
        first.wait()
        await asyncio.sleep(0.5)
        decided_before = completions(world, ids)
        assert decided_before < len(ids), "the kill came after every decision: nothing was tested"
        killed_at = time.time() * 1000
        second = world.spawn_engine("timers-kill-second")
        # the next engine decides the fires already sent, and sends again at once what the first one had only
        # taken (its index entries never moved): nothing waits for a refire (30 s)
        await world.wait_until(lambda: completions(world, ids) == len(ids), timeout=60,
                               message="every instance completed")
        assert time.time() * 1000 - killed_at < processor_mod.REFIRE_AFTER_MS
        await asyncio.sleep(1.5)
        second.send_signal(signal.SIGTERM)
        assert_each_decided_once(world, ids)
        assert due > 0


async def test_an_aborted_transaction_between_fire_and_decision_loses_no_timer(kafka_bootstrap, monkeypatch):
    monkeypatch.setattr(processor_mod, "REFIRE_AFTER_MS", 2_000)
    async with EngineWorld(kafka_bootstrap, partitions=1) as world:
        await world.publish_template("tpl_burst", BURST)
        await world.start_engine()
        ids, _ = await start_burst(world, "abort", 20, due_in_s=5)
        changelog = ConfigResource(ConfigResourceType.TOPIC, world.topic(topics.ENGINE_INSTANCES_CHANGELOG),
                                   configs={"max.message.bytes": "250"})
        admin = AIOKafkaAdminClient(bootstrap_servers=world.bootstrap)
        await admin.start()
        try:  # the changelog now refuses every state (not the small offsets record a dead letter writes, ADR 13):
            # the transaction deciding the fires aborts, every time
            await admin.alter_configs([changelog])
            await world.wait_until(
                lambda: any(d.error_type == "uncommittable" and d.source_topic == world.topic(topics.WORKFLOW_COMMANDS)
                            for d in world.dlq), timeout=60, message="the fires are dead-lettered")
            assert completions(world, ids) == 0
            changelog.configs["max.message.bytes"] = "1048588"
            await admin.alter_configs([changelog])
        finally:
            await admin.close()
        # the refires bring every timer back (the processor has read past the lost fires)
        await world.wait_until(lambda: completions(world, ids) == len(ids), timeout=60,
                               message="every instance completed")
        await asyncio.sleep(1)
        assert_each_decided_once(world, ids)


async def changelog_transactions(world: EngineWorld) -> list[list]:
    """The states each committed transaction wrote to partition 0 of the changelog, in order: one partition's
    transactions are written one after another by its one producer, and each ends with the offsets record
    (ADR 13), so the records between two offsets records are one transaction's."""
    consumer = AIOKafkaConsumer(bootstrap_servers=world.bootstrap, enable_auto_commit=False,
                                isolation_level="read_committed")
    await consumer.start()
    transactions, current = [], []
    try:
        tp = TopicPartition(world.topic(topics.ENGINE_INSTANCES_CHANGELOG), 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        while await consumer.position(tp) < end:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    if is_offsets(record.key):
                        transactions.append(current)
                        current = []
                    elif record.value is not None:
                        current.append(world.codec.decode(record.value))
    finally:
        await consumer.stop()
    return transactions


async def test_a_burst_over_the_cap_is_decided_over_several_transactions_each_timer_once(kafka_bootstrap,
                                                                                        monkeypatch):
    monkeypatch.setattr(processor_mod, "LOOKAHEAD_MS", 3_000)
    monkeypatch.setattr(processor_mod, "FIRE_BATCH", 20)  # 300 timers: 15 records, sent in one produce
    monkeypatch.setattr(processor_mod, "FIRE_CAP", 50)  # at most 3 records' worth (60 timers) a transaction
    async with EngineWorld(kafka_bootstrap, partitions=1) as world:
        ids = await burst_decided_once(world, "cap", timeout=90)
        assert not any(isinstance(e, ev.CommandRejected) for i in ids for e in world.events[i])
        deciding = [sum(1 for state in txn if state.is_terminal) for txn in await changelog_transactions(world)]
        deciding = [n for n in deciding if n]
        assert sum(deciding) == len(ids)
        assert max(deciding) <= 60 and len(deciding) >= 5, deciding
        # the records past the cap were written back as they were: the same batch ids, more than once
        found = Counter(f.batch_id for f in await fires(world))
        assert len(found) == 15 and any(n > 1 for n in found.values()), found
