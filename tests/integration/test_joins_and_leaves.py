"""Workers join and leave the group over and over while instances run; the invariant checker then finds
every instance finished once, with a gap-free sequence (issue 9, "Suites that keep them found").

`FLOWLINE_CHURN_ROUNDS` sets the number of join/leave rounds (CI: 3; the long variant: 20)."""

from __future__ import annotations

import asyncio
import os

import pytest

from core.commands import StartInstance
from tests.integration import invariants
from tests.integration.engine_harness import EngineWorld
from tests.integration.test_engine_exactly_once import RELAY

pytestmark = pytest.mark.asyncio(loop_scope="session")

ROUNDS = int(os.environ.get("FLOWLINE_CHURN_ROUNDS", "3"))


async def test_repeated_joins_and_leaves_under_load_keep_every_invariant(kafka_bootstrap):
    async with EngineWorld(kafka_bootstrap, partitions=6) as world:
        await world.publish_template("tpl_relay", RELAY)
        await world.start_engine()
        ids: list[str] = []
        stop_load = asyncio.Event()

        async def load() -> None:
            n = 0
            while not stop_load.is_set():
                instance_id = f"wfi_churn_{n:05d}"
                await world.send_command(StartInstance(command_id=f"start:{instance_id}", instance_id=instance_id,
                                                       template_id="tpl_relay", template_version=1, tenant_id="t1",
                                                       trigger={"n": n}))
                ids.append(instance_id)
                n += 1
                await asyncio.sleep(0.02)

        producer = asyncio.create_task(load())
        try:
            for round_ in range(ROUNDS):
                joined = [await world.start_engine() for _ in range(1 + round_ % 2)]  # two or three workers
                await asyncio.sleep(1.5)
                for engine in joined:
                    await world.stop_engine(engine)
                await asyncio.sleep(1.0)
        finally:
            stop_load.set()
            await producer
        events = await _wait_finished(world, ids)
        assert invariants.check(events, finished=ids) == []
        print(f"{ROUNDS} join/leave rounds, {len(ids)} instances: no violation")


async def _wait_finished(world: EngineWorld, ids: list[str], timeout: float = 120) -> dict:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        events = await invariants.read_events(world.bootstrap, world.prefix, settle=0.5)
        if not invariants.check(events, finished=ids) or loop.time() > deadline:
            return events
        await asyncio.sleep(1.0)
