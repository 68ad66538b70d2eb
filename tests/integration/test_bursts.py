"""Issue 9.10: under a burst a worker keeps its group membership, and one that rejoins and gets its
partitions back keeps their states (reads only the changelog written meanwhile).

CI: 3,000 transfer events at once into one worker. Long variant (docs/performance.md):
`FLOWLINE_BURST=20000 FLOWLINE_BURST_WORKERS=1` and `=3` (in-process workers sharing one event loop).
"""

from __future__ import annotations

import asyncio
import gc
import os
import time

import pytest

from core import events as ev
from core.actors import Actor
from core.builtin import builtin_template
from core.commands import RecordDecision
from schemas import topics
from tests.integration.engine_harness import EngineWorld
from tests.integration.test_engine import transfer

pytestmark = pytest.mark.asyncio(loop_scope="session")

BURST = int(os.environ.get("FLOWLINE_BURST", "3000"))
WORKERS = int(os.environ.get("FLOWLINE_BURST_WORKERS", "1"))
MANAGER = Actor(id="u_manager", roles=("finance_manager",), tenant_id="t1")


def instance(world: EngineWorld, n: int) -> str:
    return world.event_instance_id("tpl_procurement", f"evt_burst_{n}")


async def test_a_burst_costs_no_membership_and_starts_every_instance_once(kafka_bootstrap):
    async with EngineWorld(kafka_bootstrap, partitions=6) as world:
        await world.publish_template("tpl_procurement", builtin_template("procurement_approval"))
        engines = [await world.start_engine() for _ in range(WORKERS)]
        roles = {w.role for w in engines[0].workers}  # the processor (it starts the transfers inline)
        await world.wait_until(lambda: all(sum(len(w.producers) for e in engines for w in e.workers
                                               if w.role == role) == 6 for role in roles),
                               timeout=60, message="the workers share every partition")
        before = sum(w.revocations for e in engines for w in e.workers)
        gc_pauses: list[float] = []
        gc_started = [0.0]

        def on_gc(phase: str, info: dict) -> None:
            if phase == "start":
                gc_started[0] = time.perf_counter()
            elif info["generation"] == 2:
                gc_pauses.append(time.perf_counter() - gc_started[0])

        gc.callbacks.append(on_gc)
        for n in range(BURST):  # one burst: no waiting for acknowledgements until the end
            event = transfer(f"evt_burst_{n}", 50_000)
            await world.producer.send(world.topic(topics.PAYMENTS_TRANSFERS), world.codec.encode(event),
                                      key=event.event_id.encode())
            if n % 100 == 0:
                await asyncio.sleep(0)  # the producing loop here is the engines' loop too: let them run
        await world.producer.flush()

        def waiting() -> int:
            return sum(1 for n in range(BURST)
                       if any(isinstance(e, ev.ApprovalRequested) for e in world.events.get(instance(world, n), ())))

        await world.wait_until(lambda: waiting() == BURST, timeout=max(120, BURST / 20),
                               message=f"{BURST} instances waiting for approval")
        revoked = sum(w.revocations for e in engines for w in e.workers) - before
        starts = [sum(isinstance(e, ev.InstanceStarted) for e in world.events[instance(world, n)])
                  for n in range(BURST)]
        gc.callbacks.remove(on_gc)
        lag = max(e.max_loop_lag for e in engines)
        print(f"full garbage collections: {len(gc_pauses)}, longest {max(gc_pauses, default=0):.2f} s")
        print(f"burst of {BURST} into {WORKERS} worker(s): {revoked} partitions revoked, "
              f"longest loop stall {lag:.2f} s")
        assert revoked == 0, f"the burst cost {revoked} partition revocations"
        assert set(starts) == {1}


async def test_a_worker_that_gets_its_partitions_back_keeps_their_states(kafka_bootstrap):
    async with EngineWorld(kafka_bootstrap, partitions=3) as world:
        await world.publish_template("tpl_procurement", builtin_template("procurement_approval"))
        first = await world.start_engine()
        ids = []
        for n in range(30):
            await world.send_transfer(transfer(f"evt_back_{n}", 50_000))
            ids.append(world.event_instance_id("tpl_procurement", f"evt_back_{n}"))
        for instance_id in ids:
            await world.wait_for_event(instance_id, ev.ApprovalRequested, step=3)
        restored_before = first.processor.reused_partitions
        second = await world.start_engine()  # takes some partitions over, then leaves again
        await world.stop_engine(second)
        # it got all three back, each with its kept states (only the changelog delta read)
        await world.wait_until(lambda: first.processor.reused_partitions - restored_before >= 3 and
                               len(first.processor.states) == 3, timeout=60,
                               message="the first worker took every partition back with its kept states")
        assert sum(len(s) for s in first.processor.states.values()) == 30
        for instance_id in ids:  # every state is current: each instance takes its approval
            await world.send_command(RecordDecision(command_id=f"ok-{instance_id}", instance_id=instance_id,
                                                    step=3, decision="approve", actor=MANAGER))
        for instance_id in ids:
            await world.wait_for_event(instance_id, ev.StepApproved, step=3)
