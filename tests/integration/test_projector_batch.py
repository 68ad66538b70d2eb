"""The projector writes a batch in one statement (issue 15): what that must keep.

At 16 workflows in flight a projector batch holds one or two workflows, so its round trips, not its rows,
were the projector's CPU and much of PostgreSQL's. These tests pin the shape of a batch (the touched
instances read and locked, ONE write, the commit) and what the one statement must still do that the
statements per table did: the step rows carry their instance's tenant, template and creation time (the
analytics rollups' owner, migration 0011, which nothing looks up any more), the stored offsets move only
forward, and a database that lost offsets this projector stored rolls the batch back (`LostCommits`).
"""

from __future__ import annotations

import uuid

import pytest
from aiokafka import TopicPartition

from core.types import ActorKind
from store.projector import LostCommits, Projector, open_pool
from tests.unit.harness import Harness, human

pytestmark = pytest.mark.asyncio(loop_scope="session")


def procurement(instance_id: str) -> Harness:
    h = Harness("procurement_approval", instance_id=instance_id)
    h.start({"amount": 50_000, "currency": "USD"})
    return h


async def projector_with_logged_statements(database_url: str) -> tuple[Projector, list[str]]:
    statements: list[str] = []

    async def log_queries(conn) -> None:
        conn.add_query_logger(lambda q: statements.append(" ".join(q.query.split())[:60]))

    projector = Projector(bootstrap_servers="unused:9092", database_url=database_url,
                          group_id=f"projector-batch-{uuid.uuid4().hex[:8]}")
    projector.pool = await open_pool(database_url, init=log_queries)
    return projector, statements


async def test_a_batch_is_read_then_one_write_then_the_commit(database_url):
    projector, statements = await projector_with_logged_statements(database_url)
    try:
        tp = TopicPartition(f"test.batch.{uuid.uuid4().hex[:8]}", 0)
        harnesses = [procurement(f"wfi_batch_{uuid.uuid4().hex[:12]}") for _ in range(3)]
        await projector.apply_events([e for h in harnesses for e in h.events], {tp: 5})
        seen = {h.instance_id: len(h.events) for h in harnesses}
        for h in harnesses:
            h.approve(2, human("cfo_1", "cfo"))
        statements.clear()
        rows = await projector.apply_events([e for h in harnesses for e in h.events[seen[h.instance_id]:]], {tp: 9})
        assert rows.applied > 0
        # BEGIN, the instances (locked), the batch's one write, COMMIT: no statement per table, no separate
        # offset check, status write or NOTIFY, and no session reset when the connection goes back
        assert len(statements) == 4, statements
        assert statements[0].startswith("BEGIN") and statements[-1].startswith("COMMIT"), statements
    finally:
        await projector.pool.close()


async def test_step_rows_carry_their_instance_and_offsets_move_forward_only(database_url):
    projector, _ = await projector_with_logged_statements(database_url)
    try:
        tp = TopicPartition(f"test.batch.{uuid.uuid4().hex[:8]}", 3)
        h = procurement(f"wfi_batch_{uuid.uuid4().hex[:12]}")
        await projector.apply_events(list(h.events), {tp: 7})
        h.approve(2, human("cfo_1", "cfo"))
        # a projector that lost the partition finishing its batch late: a lower offset never moves it back
        await projector.apply_events(list(h.events), {tp: 8})
        projector._stored[tp] = None
        await projector.apply_events([], {tp: 4})
        async with projector.pool.acquire() as conn:
            instance = await conn.fetchrow("SELECT tenant_id, template_id, created_at FROM workflow_instances "
                                           "WHERE id = $1", h.instance_id)
            steps = await conn.fetch("SELECT tenant_id, template_id, instance_created_at, step, status, approved_by "
                                     "FROM workflow_step_executions WHERE instance_id = $1 ORDER BY step",
                                     h.instance_id)
            stored = await conn.fetchval("SELECT next_offset FROM projector_offsets WHERE topic = $1 AND "
                                         "partition = $2", tp.topic, tp.partition)
            trail = await conn.fetch("SELECT seq, actor_id, actor_kind, details FROM workflow_transitions "
                                     "WHERE instance_id = $1 ORDER BY seq", h.instance_id)
        assert stored == 8
        assert len(steps) >= 2
        for step in steps:
            assert (step["tenant_id"], step["template_id"], step["instance_created_at"]) == tuple(instance)
        assert [r["seq"] for r in trail] == [e.seq for e in h.events]
        decision = next(r for r in trail if r["actor_id"] == "cfo_1")
        assert decision["actor_kind"] == ActorKind.HUMAN.value
    finally:
        await projector.pool.close()


async def test_a_batch_after_lost_offsets_is_rolled_back(database_url):
    projector, _ = await projector_with_logged_statements(database_url)
    try:
        tp = TopicPartition(f"test.batch.{uuid.uuid4().hex[:8]}", 1)
        h = procurement(f"wfi_batch_{uuid.uuid4().hex[:12]}")
        await projector.apply_events(list(h.events), {tp: 6})
        async with projector.pool.acquire() as conn:  # PostgreSQL loses the commit that stored them
            await conn.execute("UPDATE projector_offsets SET next_offset = 2 WHERE topic = $1", tp.topic)
        h.approve(2, human("cfo_1", "cfo"))
        with pytest.raises(LostCommits):
            await projector.apply_events(list(h.events), {tp: 9})
        async with projector.pool.acquire() as conn:
            stored = await conn.fetchval("SELECT next_offset FROM projector_offsets WHERE topic = $1", tp.topic)
            last_seq = await conn.fetchval("SELECT last_seq FROM workflow_instances WHERE id = $1", h.instance_id)
        assert stored == 2, "nothing of the batch was committed"
        assert last_seq < h.events[-1].seq
    finally:
        await projector.pool.close()
