"""Growing the partition count moves instances; their states and timers must come along."""

from __future__ import annotations

import pytest

from core import events as ev
from core.commands import StartInstance
from deploy.repartition import Plan, RepartitionError, repartition
from streams.transactional import partition_for
from tests.integration.engine_harness import EngineWorld

pytestmark = pytest.mark.asyncio(loop_scope="session")

WAIT = {
    "name": "Wait then finish",
    "trigger_type": "manual",
    "steps": [
        {"type": "wait", "name": "Hold", "config": {"duration_seconds": 4}},
        {"type": "condition", "name": "Done", "config": {"expression": "true", "if_true": "complete"}},
    ],
}


async def test_growing_partitions_keeps_every_instance_and_its_timer(kafka_bootstrap, tmp_path):
    async with EngineWorld(kafka_bootstrap, partitions=3) as world:
        await world.publish_template("tpl_wait", WAIT)
        engine = await world.start_engine()
        ids = [f"wfi_grow_{n:02d}" for n in range(30)]
        for instance_id in ids:
            await world.send_command(StartInstance(command_id=f"start:{instance_id}", instance_id=instance_id,
                                                   template_id="tpl_wait", template_version=1, tenant_id="t1",
                                                   trigger={}))
        for instance_id in ids:
            await world.wait_for_event(instance_id, ev.WaitStarted)
        plan = Plan(bootstrap=kafka_bootstrap, prefix=world.prefix, partitions=6, engine_id=world.app_id,
                    backup_dir=tmp_path)
        with pytest.raises(RepartitionError, match="stop every engine"):
            await repartition(plan, confirm=False)
        await world.stop_engine(engine)
        counts = await repartition(plan, confirm=False)
        assert set(counts.values()) == {6}
        [backup] = tmp_path.glob("changelog-*.jsonl")
        assert len(backup.read_text().splitlines()) == len(ids)
        moved = [i for i in ids if partition_for(i.encode(), 3) != partition_for(i.encode(), 6)]
        assert moved, "with 30 instances some must change partition"
        world.partitions = 6
        await world.start_engine()
        for instance_id in ids:
            await world.wait_for_event(instance_id, ev.InstanceCompleted, timeout=40)
        for instance_id in ids:
            seqs = [e.seq for e in world.events[instance_id]]
            assert seqs == list(range(1, len(seqs) + 1)), world.log_text(instance_id)
