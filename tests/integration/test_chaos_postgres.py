"""Kill PostgreSQL (`kill -9` of the postmaster) with a load running, restart it: the projector waits the
outage out and catches up with no gap in the audit trail (issue 9).

Each instance's timeline rows in the read model are compared, one for one, with its events on
`workflow.events` read as a downstream consumer reads them (read_committed). PostgreSQL restarts with
the stack's own `start_postgres`; the test restores it whatever happens. Against an external database
there is no server of ours to kill: skipped there, and only there.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal

import asyncpg
import pytest

from core import events as ev
from deploy import stackctl as stack_mod
from store.projector import Projector
from tests.integration import invariants
from tests.integration.chaos import PaymentLoad, scaled
from tests.integration.engine_harness import EngineWorld

pytestmark = pytest.mark.asyncio(loop_scope="session")


def kill_postgres(profile: stack_mod.Profile) -> None:
    proc = stack_mod.postgres_process(profile)
    assert proc is not None, "the test stack's PostgreSQL is not running"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)


async def timelines(database_url: str, instance_ids: list[str]) -> dict[str, list[tuple[int, str]]]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT instance_id, seq, event_type FROM workflow_transitions "
                                "WHERE instance_id = ANY($1::text[]) ORDER BY instance_id, seq", instance_ids)
    finally:
        await conn.close()
    found: dict[str, list[tuple[int, str]]] = {i: [] for i in instance_ids}
    for row in rows:
        found[row["instance_id"]].append((row["seq"], row["event_type"]))
    return found


async def durable_commits(database_url: str, on: bool) -> None:
    """The test profile runs PostgreSQL with `synchronous_commit = off` (deploy/stackctl/postgres.py: throwaway data,
    faster): a crash of the server then loses commits it had already acknowledged, and the projector,
    which commits its Kafka offsets once PostgreSQL acknowledged the batch, never re-reads them: a
    permanent gap in the audit trail (found by this suite; docs/testing.md). Production keeps the default
    `synchronous_commit = on`, so the suite runs the server the way production does while it kills it."""
    conn = await asyncpg.connect(database_url)
    try:
        if on:
            await conn.execute("ALTER SYSTEM SET synchronous_commit = on")
        else:
            await conn.execute("ALTER SYSTEM RESET synchronous_commit")
        await conn.execute("SELECT pg_reload_conf()")
    finally:
        await conn.close()


async def test_the_projector_catches_up_without_a_gap_after_postgres_is_killed(stack, kafka_bootstrap,
                                                                               database_url, tmp_path):
    profile = stack.profile
    if profile.external_postgres:
        pytest.skip("the database is external: not ours to kill")
    count, kills = scaled(60, 400), scaled(1, 3)
    await durable_commits(database_url, True)
    async with EngineWorld(kafka_bootstrap, partitions=3) as world, \
            PaymentLoad(world, database_url, tmp_path / "ledger.jsonl") as load:
        projector = Projector(bootstrap_servers=kafka_bootstrap, database_url=database_url,
                              topic_prefix=world.prefix, group_id=f"projector-{world.prefix.rstrip('.')}")
        projecting = asyncio.create_task(projector.run())
        try:
            await asyncio.wait_for(projector.ready.wait(), 30)
            step = count // (kills + 1)
            sender = asyncio.create_task(load.run(count))
            for k in range(1, kills + 1):
                await world.wait_until(lambda k=k: len(load.ids) >= k * step, timeout=180,
                                       message=f"{k * step} workflows sent")
                kill_postgres(profile)
                await asyncio.sleep(3)  # events keep coming while the read model is away
                await asyncio.to_thread(stack_mod.start_postgres, profile)
            await sender
            await load.wait_finished(timeout=300)
            assert await load.violations() == []
            events = await invariants.read_events(kafka_bootstrap, world.prefix, settle=2.0)
            expected = {i: [(e.seq, type(e).__name__) for e in events[i] if not isinstance(e, ev.CommandRejected)]
                        for i in load.ids}  # rejections have their own table, not the timeline

            async def caught_up() -> dict:
                for _ in range(600):
                    rows = await timelines(database_url, load.ids)
                    if all(len(rows[i]) >= len(expected[i]) for i in load.ids):
                        return rows
                    await asyncio.sleep(0.2)
                return rows

            rows = await caught_up()
            assert not projecting.done(), f"the projector stopped: {projecting.exception()!r}"
            gaps = {i: f"timeline {rows[i]}\n  events {expected[i]}" for i in load.ids if rows[i] != expected[i]}
            assert gaps == {}
        finally:
            if stack_mod.postgres_process(profile) is None:
                await asyncio.to_thread(stack_mod.start_postgres, profile)
            await durable_commits(database_url, False)
            projector.stop()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(projecting, 30)
