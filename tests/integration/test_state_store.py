"""The engine's on-disk state stores on the real broker (streams/state_store.py, streams/standby.py).

- a worker killed with SIGKILL and started again on the same disk reads only the changelog delta;
- an aborted transaction leaves nothing in the store;
- a store of another cluster/topic, or one that does not open, is rebuilt from the changelog;
- after a failover, the survivor reads only the delta of the dead worker's partitions (its standby copies),
  and every instance goes on exactly once (the invariant checker).
"""

from __future__ import annotations

import asyncio
import signal

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from core import events as ev
from core.actors import SYSTEM, Actor
from core.builtin import builtin_template
from core.commands import RecordDecision, StartInstance
from schemas import topics
from streams.state_store import PartitionStore
from streams.transactional import partition_for
from tests.integration import invariants
from tests.integration.engine_harness import EngineWorld

pytestmark = pytest.mark.asyncio(loop_scope="session")

MANAGER = Actor(id="u_manager", roles=("finance_manager",), tenant_id="t1")
WAITING = 60


def start(instance_id: str, amount: int = 500) -> StartInstance:
    return StartInstance(command_id=f"start:{instance_id}", instance_id=instance_id, issued_at=1,
                         template_id="tpl_procurement", template_version=1, tenant_id="t1", initiated_by=SYSTEM,
                         trigger={"amount": amount, "metadata": {"type": "procurement"}})


async def waiting_instances(world: EngineWorld, prefix: str, count: int = WAITING) -> list[str]:
    ids = [f"wfi_{prefix}_{n:03d}" for n in range(count)]
    for instance_id in ids:
        await world.send_command(start(instance_id))
    for instance_id in ids:
        await world.wait_for_event(instance_id, ev.ApprovalRequested, timeout=60)
    return ids


async def approve_all(world: EngineWorld, ids: list[str]) -> None:
    for instance_id in ids:
        await world.send_command(RecordDecision(command_id=f"ok:{instance_id}", instance_id=instance_id,
                                                step=3, decision="approve", actor=MANAGER))
    for instance_id in ids:
        await world.wait_for_event(instance_id, ev.StepApproved, step=3, timeout=60)


@pytest.fixture
async def world(kafka_bootstrap, tmp_path):
    async with EngineWorld(kafka_bootstrap, partitions=3, state_dir=tmp_path) as w:
        await w.publish_template("tpl_procurement", builtin_template("procurement_approval"))
        yield w


def settings_for(world: EngineWorld, **overrides):
    return {"state_dir": str(world.state_dir), **overrides}


async def test_a_worker_killed_and_restarted_on_the_same_disk_reads_only_the_changelog_delta(world):
    env = {"FLOWLINE_ENGINE_STATE_DIR": str(world.state_dir)}
    proc = world.spawn_engine("state-store-kill", extra_env=env)
    ids = await waiting_instances(world, "kill")
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    engine = await world.start_engine(**settings_for(world))
    reads = engine.processor.restore_reads
    # the dead worker's stores were current (it wrote each batch after its commit): nothing to read in full,
    # and the delta is at most the last moments (here: nothing, or a batch the kill cut off)
    assert reads["full"] == 0, reads
    assert reads["delta"] < WAITING, reads
    assert engine.processor.reused_partitions == world.partitions
    assert sum(len(store) for store in engine.processor.states.values()) == WAITING
    await approve_all(world, ids)  # every state is current: each instance takes its approval


async def test_an_aborted_transaction_leaves_nothing_on_disk(kafka_bootstrap, tmp_path):
    async with EngineWorld(kafka_bootstrap, partitions=1) as world:
        await world.publish_template("tpl_procurement", builtin_template("procurement_approval"))
        engine = await world.start_engine(state_dir=str(tmp_path))
        ids = await waiting_instances(world, "abort", 3)
        store = engine.processor.stores[0]
        offset_before = store.offset
        admin = AIOKafkaAdminClient(bootstrap_servers=world.bootstrap)
        await admin.start()
        try:  # the changelog now refuses the big state: its transaction aborts at commit
            await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, world.topic(
                topics.ENGINE_INSTANCES_CHANGELOG), configs={"max.message.bytes": "100000"})])
        finally:
            await admin.close()
        big = start("wfi_big")
        big = StartInstance(**{**big.__dict__, "trigger": {**big.trigger, "memo": "m" * 150_000}})
        await world.send_command(big)
        await world.wait_until(lambda: any(getattr(d, "error_type", "") == "uncommittable" for d in world.dlq),
                               timeout=60, message="the start the changelog refuses is dead-lettered")
        assert "wfi_big" not in store
        assert store.get("wfi_big") is None
        assert not world.events.get("wfi_big")  # nothing of it committed anywhere
        assert store.offset == offset_before  # no changelog offset of the aborted transaction either
        await approve_all(world, ids)  # the partition goes on
        assert store.offset > offset_before


async def test_a_store_of_another_cluster_or_topic_is_rebuilt_from_the_changelog(world):
    engine = await world.start_engine(**settings_for(world))
    ids = await waiting_instances(world, "stale", 12)
    slot = engine.processor.state_dir().path
    await world.stop_engine(engine)
    await asyncio.sleep(0.5)
    for partition in range(world.partitions):  # as if the directory came from another cluster
        store = PartitionStore(slot / f"p{partition}", world.codec)
        store.stamp(b"another-cluster/" + world.topic(topics.ENGINE_INSTANCES_CHANGELOG).encode(), store.offset)
        store.close()
    again = await world.start_engine(**settings_for(world))
    assert again.processor.restore_reads["delta"] == 0
    assert again.processor.restore_reads["full"] >= 12
    assert sum(len(store) for store in again.processor.states.values()) == 12
    await approve_all(world, ids)


async def test_a_store_whose_offset_is_past_the_changelog_end_is_rebuilt(world):
    engine = await world.start_engine(**settings_for(world))
    ids = await waiting_instances(world, "ahead", 9)
    slot = engine.processor.state_dir().path
    await world.stop_engine(engine)
    await asyncio.sleep(0.5)
    for partition in range(world.partitions):  # a recreated topic is shorter than the store thinks
        store = PartitionStore(slot / f"p{partition}", world.codec)
        store.stamp(store.identity, (store.offset or 0) + 1_000)
        store.close()
    again = await world.start_engine(**settings_for(world))
    assert again.processor.restore_reads["delta"] == 0 and again.processor.restore_reads["full"] >= 9
    await approve_all(world, ids)


async def test_after_a_failover_the_survivor_reads_only_the_delta_and_every_instance_goes_on_once(world):
    survivor = await world.start_engine(**settings_for(world, standby_replicas=1))
    proc = world.spawn_engine("state-store-failover", extra_env={
        "FLOWLINE_ENGINE_STATE_DIR": str(world.state_dir / "other-host"), "FLOWLINE_ENGINE_SESSION_TIMEOUT_MS": "6000"})
    await world.wait_until(lambda: len(survivor.workers[0].producers) < world.partitions, timeout=60,
                           message="the second worker took partitions")
    ids = await waiting_instances(world, "failover")
    processor = survivor.processor
    if processor.standby is not None:
        await world.wait_until(lambda: processor.standby.partitions, timeout=30,
                               message="the survivor shadows the other worker's partitions")
    await asyncio.sleep(2)  # the standby has followed the changelog
    moved = set(range(world.partitions)) - set(survivor.workers[0].producers)
    on_moved = sum(1 for i in ids if partition_for(i.encode(), world.partitions) in moved)
    assert on_moved > 0
    full_before = processor.restore_reads["full"]
    delta_before = processor.restore_reads["delta"]
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    await world.wait_until(lambda: len(processor.stores) == world.partitions, timeout=60,
                           message="the survivor owns every partition, its states taken")
    # the standby had copied the dead worker's states: taking its partitions read less than one changelog
    # record per instance on them (without a standby, at least one each: every waiting state was written)
    assert processor.restore_reads["full"] == full_before, processor.restore_reads
    assert processor.restore_reads["delta"] - delta_before < on_moved, (processor.restore_reads, on_moved)
    await approve_all(world, ids)
    events = await invariants.read_events(world.bootstrap, world.prefix)
    assert invariants.check({i: events[i] for i in ids}) == []
    for instance_id in ids:
        assert sum(isinstance(e, ev.ApprovalRequested) and e.step == 3 for e in events[instance_id]) == 1
