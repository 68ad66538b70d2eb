"""Kill an engine with SIGKILL mid-stream: committed output must have no duplicate and no gap.

Kafka transactions are one layer; the core's command ids are the other. This test looks only at what a
downstream consumer sees with `isolation_level=read_committed` on `workflow.events`.
"""

from __future__ import annotations

import asyncio
import signal
from collections import Counter

import pytest

from core import events as ev
from core.commands import StartInstance
from tests.integration import invariants
from tests.integration.engine_harness import EngineWorld

pytestmark = pytest.mark.asyncio(loop_scope="session")

RELAY = {
    "name": "Relay",
    "trigger_type": "manual",
    "steps": [
        {"type": "condition", "name": "Check", "config": {"expression": "trigger.n >= 0"}},
        {"type": "wait", "name": "Pause", "config": {"duration_seconds": 1}},
        {"type": "condition", "name": "Finish", "config": {"expression": "true", "if_true": "complete"}},
    ],
}
INSTANCES = 240


async def test_sigkill_mid_stream_leaves_no_duplicate_and_no_gap(kafka_bootstrap):
    async with EngineWorld(kafka_bootstrap, partitions=3) as world:
        await world.publish_template("tpl_relay", RELAY)
        first = world.spawn_engine("eos-first")
        await asyncio.sleep(4)  # let it join the group and take the partitions
        ids = [f"wfi_eos_{n:04d}" for n in range(INSTANCES)]
        second = None
        for n, instance_id in enumerate(ids):
            await world.send_command(StartInstance(command_id=f"start:{instance_id}", instance_id=instance_id,
                                                   template_id="tpl_relay", template_version=1, tenant_id="t1",
                                                   trigger={"n": n}))
            if n == INSTANCES // 2:
                first.send_signal(signal.SIGKILL)
                first.wait()
                second = world.spawn_engine("eos-second")
            await asyncio.sleep(0.01)
        assert second is not None
        await world.wait_until(
            lambda: all(any(isinstance(e, ev.InstanceCompleted) for e in world.events.get(i, ())) for i in ids),
            timeout=120, message="every instance completed")
        await asyncio.sleep(1.5)  # anything late (a duplicate) would arrive now
        second.send_signal(signal.SIGTERM)
        for instance_id in ids:
            events = world.events[instance_id]
            seqs = [e.seq for e in events]
            assert seqs == list(range(1, len(seqs) + 1)), f"{instance_id}: {seqs}\n{world.log_text(instance_id)}"
            kinds = Counter(type(e).__name__ for e in events)
            assert kinds["InstanceStarted"] == 1 and kinds["InstanceCompleted"] == 1, world.log_text(instance_id)
        # the same, read independently of the harness, as a downstream consumer would
        assert invariants.check(await invariants.read_events(world.bootstrap, world.prefix), finished=ids) == []
