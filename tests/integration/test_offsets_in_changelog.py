"""The processor's consumed offsets live in the state changelog (ADR 13, docs/adr/0013-...).


On the real broker:
- an aborted transaction leaves neither its states nor its offsets in the committed changelog;
- a partition resumes at the offsets its changelog holds, even when the group's committed offsets are behind
  them (nothing is processed twice), and the group catches up with them;
- a changelog without an offsets record (the first start after the upgrade) resumes at the group's offsets.
"""

from __future__ import annotations

import asyncio
import functools

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from core import events as ev
from core.builtin import builtin_template
from core.commands import StartInstance
from schemas import topics
from streams import metrics
from streams.state_store import OFFSETS_KEY, decode_offsets
from tests.integration.engine_harness import EngineWorld
from tests.integration.test_state_store import start, waiting_instances

pytestmark = pytest.mark.asyncio(loop_scope="session")


def processed() -> float:
    """Records the processor role consumed and committed, in this process (in-process engines only)."""
    return metrics.RECORDS.labels("processor")._value.get()


async def read_changelog(world: EngineWorld, isolation: str) -> list:
    tp = TopicPartition(world.topic(topics.ENGINE_INSTANCES_CHANGELOG), 0)
    consumer = AIOKafkaConsumer(bootstrap_servers=world.bootstrap, isolation_level=isolation,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        found = []
        while await consumer.position(tp) < end:
            for records in (await consumer.getmany(tp, timeout_ms=1000)).values():
                found += records
        return found
    finally:
        await consumer.stop()


async def commit_group(world: EngineWorld, offsets: dict[TopicPartition, int]) -> None:
    """Set the processor group's committed offsets by hand (the group has no member now)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=world.bootstrap, group_id=f"{world.app_id}-processor",
                                enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(offsets))
        await consumer.commit(offsets)
    finally:
        await consumer.stop()


async def group_offsets(world: EngineWorld) -> dict[TopicPartition, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=world.bootstrap)
    await admin.start()
    try:
        return {tp: meta.offset for tp, meta in
                (await admin.list_consumer_group_offsets(f"{world.app_id}-processor")).items()}
    finally:
        await admin.close()


async def input_ends(world: EngineWorld) -> dict[TopicPartition, int]:
    tps = [TopicPartition(world.topic(t), 0) for t in (topics.WORKFLOW_COMMANDS, topics.WORKFLOW_STEP_RESULTS)]
    consumer = AIOKafkaConsumer(bootstrap_servers=world.bootstrap, isolation_level="read_committed")
    await consumer.start()
    try:
        return await consumer.end_offsets(tps)
    finally:
        await consumer.stop()


@pytest.fixture
async def world(kafka_bootstrap, tmp_path):
    async with EngineWorld(kafka_bootstrap, partitions=1, state_dir=tmp_path) as w:
        await w.publish_template("tpl_procurement", builtin_template("procurement_approval"))
        # these tests follow the offsets of the commands and the results; with inline starts (ADR 14) the
        # trigger topic would be a third input of the processor's group, with offsets of its own
        w.start_engine = functools.partial(EngineWorld.start_engine, w, inline_start=False)
        yield w


async def test_an_aborted_transaction_leaves_neither_states_nor_offsets(world):
    engine = await world.start_engine()
    await waiting_instances(world, "abort", 3)
    admin = AIOKafkaAdminClient(bootstrap_servers=world.bootstrap)
    await admin.start()
    try:  # the events topic refuses the big start's InstanceStarted: its transaction (state and offsets) aborts
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, world.topic(topics.WORKFLOW_EVENTS),
                                                  configs={"max.message.bytes": "100000"})])
    finally:
        await admin.close()
    big = start("wfi_big")
    await world.send_command(StartInstance(**{**big.__dict__, "trigger": {**big.trigger, "memo": "m" * 150_000}}))
    await world.wait_until(lambda: any(getattr(d, "error_type", "") == "uncommittable" for d in world.dlq),
                           timeout=60, message="the start the events topic refuses is dead-lettered")
    everything = await read_changelog(world, "read_uncommitted")
    committed = {r.offset for r in await read_changelog(world, "read_committed")}
    aborted = [r for r in everything if r.offset not in committed]
    # the aborted transactions did write the big state and their offsets record to the changelog...
    assert any(r.key == b"wfi_big" for r in aborted)
    assert any(r.key == OFFSETS_KEY for r in aborted)
    # ...and none of it is committed: no state of it, and the offsets only as the dead letter's commit stored them
    assert not any(r.key == b"wfi_big" for r in everything if r.offset in committed)
    stored = [decode_offsets(r.value) for r in everything if r.offset in committed and r.key == OFFSETS_KEY]
    store = engine.processor.stores[0]
    assert "wfi_big" not in store
    await world.stop_engine(engine)
    again = await world.start_engine()  # the restored store holds the last committed offsets, nothing aborted
    assert "wfi_big" not in again.processor.stores[0]
    assert again.processor.stores[0].consumed == stored[-1]
    assert stored[-1][(world.topic(topics.WORKFLOW_COMMANDS), 0)] == (await input_ends(world))[
        TopicPartition(world.topic(topics.WORKFLOW_COMMANDS), 0)]


async def test_a_partition_resumes_at_the_changelog_offsets_when_the_group_is_behind(world):
    engine = await world.start_engine()
    ids = await waiting_instances(world, "behind", 6)
    await world.stop_engine(engine)
    ends = {tp: o for tp, o in (await input_ends(world)).items() if o > 0}  # the commands (no step results here)
    assert len(ends) == 1
    await commit_group(world, dict.fromkeys(ends, 0))  # the group far behind what the changelog says
    before = processed()
    again = await world.start_engine()
    assert again.processor.stores[0].consumed == {(tp.topic, tp.partition): o for tp, o in ends.items()}
    # the group catches up with the changelog's offsets (its first commit after the assignment)
    for _ in range(100):
        if await group_offsets(world) == ends:
            break
        await asyncio.sleep(0.1)
    assert await group_offsets(world) == ends
    assert processed() == before  # nothing was read again from the group's offsets
    for instance_id in ids:  # and no decision twice: one approval request per instance
        assert sum(isinstance(e, ev.ApprovalRequested) for e in world.events[instance_id]) == 1


async def test_without_an_offsets_record_the_group_offsets_are_used(world):
    engine = await world.start_engine()
    await waiting_instances(world, "upgrade", 4)
    await world.stop_engine(engine)
    changelog = world.topic(topics.ENGINE_INSTANCES_CHANGELOG)
    producer = AIOKafkaProducer(bootstrap_servers=world.bootstrap)
    await producer.start()
    try:  # as if the changelog was written before the upgrade: it has no offsets record
        await producer.send_and_wait(changelog, None, key=OFFSETS_KEY, partition=0)
    finally:
        await producer.stop()
    ends = await input_ends(world)
    commands = TopicPartition(world.topic(topics.WORKFLOW_COMMANDS), 0)
    behind = {**ends, commands: ends[commands] - 2}
    await commit_group(world, behind)  # the group says: the last two commands are not processed yet
    before = processed()
    await world.start_engine()
    # (no look at the store's offsets here: the two commands may already be decided, and their transaction
    # writes the offsets record again, by the time the assignment returns; the counts below tell it apart)
    await world.wait_until(lambda: processed() - before >= 2, timeout=30,
                           message="the two commands after the group's offset are processed")
    await asyncio.sleep(1)
    assert processed() - before == 2  # from the group's offset, not from the beginning of the topic


async def test_group_offsets_ahead_of_the_changelog_win(world):
    """After a downgrade (an engine before ADR 13 commits only the group's offsets) and this version again, the
    changelog's offsets record is older than the group's: what the older engine processed is not redone."""
    engine = await world.start_engine()
    await waiting_instances(world, "before", 3)
    await world.stop_engine(engine)
    later = [f"wfi_later_{n}" for n in range(2)]
    for instance_id in later:  # as if an older engine processed these two and committed only the group
        await world.send_command(start(instance_id))
    ends = {tp: o for tp, o in (await input_ends(world)).items() if o > 0}
    await commit_group(world, ends)
    before = processed()
    again = await world.start_engine()
    assert again.processor.stores[0].consumed != {(tp.topic, tp.partition): o for tp, o in ends.items()}
    await asyncio.sleep(2)
    assert processed() == before  # nothing read again: the group's offsets were the later ones
    assert not any(world.events.get(i) for i in later)


async def test_a_clean_stop_leaves_the_group_offsets_at_the_truth(world):
    """The group's offsets lag the changelog while the engine runs; a clean stop commits them (lag tools and
    `flowline repartition`'s idle check read the group)."""
    engine = await world.start_engine()
    await waiting_instances(world, "stop", 5)
    await world.stop_engine(engine)
    ends = {tp: o for tp, o in (await input_ends(world)).items() if o > 0}
    assert await group_offsets(world) == ends
