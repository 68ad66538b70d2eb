"""The read model is exactly-once by construction (issue 9): with a payment load running, `kill -9` the
projector and crash PostgreSQL so that it loses commits it had acknowledged (asynchronous commit, as the
test profile runs it), restart both, and the audit trail of every instance equals its events on
`workflow.events`: no gap, no double.

Losing acknowledged commits is what `synchronous_commit = off` allows (up to three WAL-writer delays of
them); the test makes the window certain instead of lucky: it holds the WAL writer (SIGSTOP) while the
projector keeps committing, waits until rows committed in that window are visible, then SIGKILLs every
process of the server. A projector that committed its position to Kafka after PostgreSQL acknowledged the
batch never re-reads those events (the gap this test found on the old code); one that stores its offsets
in the same transaction as the rows loses them together and projects the events again.

The projector runs as a separate process (`python -m deploy.cli projector`, as the stack runs it) so that
it can be SIGKILLed. Against an external database there is no server of ours to crash: skipped there only.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys

import asyncpg
import psutil
import pytest

from core import events as ev
from deploy import stackctl as stack_mod
from tests.integration import invariants
from tests.integration.chaos import PaymentLoad, scaled, sigkill, stop
from tests.integration.engine_harness import REPO, EngineWorld
from tests.integration.test_chaos_postgres import timelines

pytestmark = pytest.mark.asyncio(loop_scope="session")


def spawn_projector(world: EngineWorld, database_url: str, group: str, n: int) -> subprocess.Popen:
    env = {**world.env(), "DATABASE_URL": database_url, "FLOWLINE_PROJECTOR_GROUP": group}
    (REPO / ".flowline").mkdir(exist_ok=True)
    log = open(REPO / ".flowline" / f"chaos-projector-{n}.log", "wb")  # noqa: SIM115 - kept open for the child
    proc = subprocess.Popen([sys.executable, "-m", "deploy.cli", "projector"], cwd=REPO, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    world._procs.append(proc)  # killed by the world on exit, whatever happens
    return proc


async def query(database_url: str, sql: str, *args):
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


async def projected(database_url: str, ids: list[str]) -> int:
    return await query(database_url, "SELECT count(*) FROM workflow_transitions WHERE instance_id = ANY($1::text[])",
                       ids)


async def crash_losing_acknowledged_commits(profile: stack_mod.Profile, database_url: str, ids: list[str]) -> int:
    """Hold the WAL writer, let the projector commit more rows, then SIGKILL the whole server. Returns how
    many audit rows had been acknowledged in the window (all of them lost by the crash)."""
    walwriter = await query(database_url, "SELECT pid FROM pg_stat_activity WHERE backend_type = 'walwriter'")
    assert walwriter, "no WAL writer found"
    before = await projected(database_url, ids)
    os.kill(walwriter, signal.SIGSTOP)
    try:
        after = before
        for _ in range(100):  # until the projector has committed in the window (the load keeps it busy)
            await asyncio.sleep(0.1)
            after = await projected(database_url, ids)
            if after >= before + 20:
                break
        await asyncio.sleep(0.5)  # and has had the time to do whatever it does after a commit
    finally:
        processes = stack_mod.pg_processes(profile)
        for proc in processes:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signal.SIGKILL)
        psutil.wait_procs(processes, timeout=30)
    return after - before


async def test_the_audit_trail_equals_the_events_after_projector_and_postgres_crashes(stack, kafka_bootstrap,
                                                                                      database_url, tmp_path):
    profile = stack.profile
    if profile.external_postgres:
        pytest.skip("the database is external: not ours to crash")
    assert await query(database_url, "SHOW synchronous_commit") == "off", \
        "the test profile runs PostgreSQL with asynchronous commit (deploy/stackctl/postgres.py)"
    count, rounds = scaled(150, 600), scaled(2, 5)
    lost = 0
    async with EngineWorld(kafka_bootstrap, partitions=3) as world, \
            PaymentLoad(world, database_url, tmp_path / "ledger.jsonl") as load:
        group = f"projector-{world.prefix.rstrip('.')}"
        spawned = 0
        projector = spawn_projector(world, database_url, group, spawned)
        try:
            step = count // (rounds + 1)
            sender = asyncio.create_task(load.run(count, pace=0.05))
            for k in range(1, rounds + 1):
                await world.wait_until(lambda k=k: len(load.ids) >= k * step - step // 2, timeout=180,
                                       message=f"{k * step - step // 2} workflows sent")
                # the projector dies with a batch in flight, wherever it is (before, in or after its commit)
                sigkill(projector)
                spawned += 1
                projector = spawn_projector(world, database_url, group, spawned)
                await world.wait_until(lambda k=k: len(load.ids) >= k * step, timeout=180,
                                       message=f"{k * step} workflows sent")
                lost += await crash_losing_acknowledged_commits(profile, database_url, list(load.ids))
                await asyncio.sleep(1)  # events keep coming while the read model is away
                await asyncio.to_thread(stack_mod.start_postgres, profile)
            await sender
            await load.wait_finished(timeout=300)
            assert await load.violations() == []
            assert lost > 0, "no acknowledged commit was lost: the crash tested nothing"
            events = await invariants.read_events(kafka_bootstrap, world.prefix, settle=2.0)
            expected = {i: [(e.seq, type(e).__name__) for e in events[i] if not isinstance(e, ev.CommandRejected)]
                        for i in load.ids}  # rejections have their own table, not the timeline
            rows: dict = {}
            for _ in range(600):
                rows = await timelines(database_url, load.ids)
                if rows == expected:
                    break
                assert projector.poll() is None, "the projector exited"
                await asyncio.sleep(0.2)
            gaps = {i: f"timeline {rows[i]}\n  events {expected[i]}" for i in load.ids if rows[i] != expected[i]}
            assert gaps == {}, f"{len(gaps)} of {len(load.ids)} audit trails differ from workflow.events"
        finally:
            if stack_mod.postgres_process(profile) is None:
                await asyncio.to_thread(stack_mod.start_postgres, profile)
            stop(projector)
