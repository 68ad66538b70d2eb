"""The projector writes a batch in one statement (issue 15): what that must keep.

At 16 workflows in flight a projector batch holds one or two workflows, so its round trips, not its rows,
were the projector's CPU and much of PostgreSQL's. These tests pin the shape of a batch (ONE write,
after a read of the instances this projector did not write last) and what the one statement must still do that the
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


async def test_a_batch_is_one_statement_and_a_read_only_for_instances_it_did_not_write(database_url):
    projector, statements = await projector_with_logged_statements(database_url)
    try:
        tp = TopicPartition(f"test.batch.{uuid.uuid4().hex[:8]}", 0)
        await projector.apply_events(list(procurement(f"wfi_batch_{uuid.uuid4().hex[:12]}").events), {tp: 1})
        statements.clear()  # asyncpg's type introspection, once per connection
        harnesses = [procurement(f"wfi_batch_{uuid.uuid4().hex[:12]}") for _ in range(3)]
        await projector.apply_events([e for h in harnesses for e in h.events], {tp: 5})
        # new instances (the batch starts with their InstanceStarted): nothing to read, the batch's one write;
        # no BEGIN, no COMMIT (the harness's template is in no table, so its step names are looked up at each
        # start: not counted)
        statements[:] = [q for q in statements if not q.startswith("SELECT template_id, version")]
        assert len(statements) == 1, statements
        assert statements[0].startswith("WITH current AS"), statements
        seen = {h.instance_id: len(h.events) for h in harnesses}
        for h in harnesses:
            h.approve(2, human("cfo_1", "cfo"))
        statements.clear()
        later = [e for h in harnesses for e in h.events[seen[h.instance_id]:]]
        rows = await projector.apply_events(later, {tp: 9})
        assert rows.applied > 0
        # instances this projector wrote last: the batch's one write and nothing else (no read, no statement
        # per table, no separate offset check, status write or NOTIFY, no session reset)
        assert len(statements) == 1, statements
        assert statements[0].startswith("WITH current AS"), statements
        async with projector.pool.acquire() as conn:
            stored = await conn.fetch("SELECT id, last_seq FROM workflow_instances WHERE id = ANY($1)",
                                      [h.instance_id for h in harnesses])
        assert {r["id"]: r["last_seq"] for r in stored} == {h.instance_id: h.events[-1].seq for h in harnesses}
        # a projector that did not write them (just assigned the partitions): it reads them first
        other, others = await projector_with_logged_statements(database_url)
        try:
            seen = {h.instance_id: len(h.events) for h in harnesses}
            for h in harnesses:
                h.approve(3, human("fm_1", "finance_manager"))
            await other.apply_events(list(procurement(f"wfi_batch_{uuid.uuid4().hex[:12]}").events), {tp: 10})
            others.clear()
            rows = await other.apply_events([e for h in harnesses for e in h.events[seen[h.instance_id]:]], {tp: 11})
            assert rows.applied == sum(len(h.events) - seen[h.instance_id] for h in harnesses)
            assert [q[:15] for q in others] == ["SELECT id, stat", "WITH current AS"], others
        finally:
            await other.pool.close()
    finally:
        await projector.pool.close()


async def test_a_start_projected_again_over_existing_rows_reads_them_and_changes_nothing(database_url):
    """A batch that starts with an instance's InstanceStarted is folded on "no row yet" without a read. When
    the row is there after all (the records projected again: a rebalance, offsets the database lost), the
    statement finds it, writes nothing, and the batch is folded again on what the database has."""
    a, _ = await projector_with_logged_statements(database_url)
    b, statements = await projector_with_logged_statements(database_url)
    try:
        tp = TopicPartition(f"test.batch.{uuid.uuid4().hex[:8]}", 4)
        h = procurement(f"wfi_batch_{uuid.uuid4().hex[:12]}")
        first = len(h.events)
        h.approve(2, human("cfo_1", "cfo"))
        await a.apply_events(list(h.events), {tp: 5})
        async with a.pool.acquire() as conn:
            before = await conn.fetch("SELECT step, attempt, status, approved_by FROM workflow_step_executions "
                                      "WHERE instance_id = $1 ORDER BY step, attempt", h.instance_id)
        rows = await b.apply_events(h.events[:first], {tp: 2})
        assert rows.applied == 0 and rows.skipped == first
        assert sum(q.startswith("WITH current AS") for q in statements) == 2, statements  # nothing, then no rows
        async with b.pool.acquire() as conn:
            after = await conn.fetch("SELECT step, attempt, status, approved_by FROM workflow_step_executions "
                                     "WHERE instance_id = $1 ORDER BY step, attempt", h.instance_id)
            last_seq = await conn.fetchval("SELECT last_seq FROM workflow_instances WHERE id = $1", h.instance_id)
        assert [tuple(r) for r in after] == [tuple(r) for r in before]
        assert last_seq == h.events[-1].seq
    finally:
        await a.pool.close()
        await b.pool.close()


async def test_a_batch_folded_on_a_state_another_projector_moved_on_is_folded_again(database_url):
    """Two projectors for a moment (a rebalance): the one that lost the partition finishes a batch of events
    the other already wrote, folded on the state it remembers. It must not write that older state over the
    newer rows (the check in its statement finds the instance moved on: it reads it again and folds anew)."""
    a, _ = await projector_with_logged_statements(database_url)
    b, _ = await projector_with_logged_statements(database_url)
    try:
        tp = TopicPartition(f"test.batch.{uuid.uuid4().hex[:8]}", 2)
        h = procurement(f"wfi_batch_{uuid.uuid4().hex[:12]}")
        await a.apply_events(list(h.events), {tp: 3})
        first = len(h.events)
        h.approve(2, human("cfo_1", "cfo"))
        middle = len(h.events)
        h.approve(3, human("fm_1", "finance_manager"))
        await b.apply_events(list(h.events), {tp: 9})  # the new owner wrote everything
        async with a.pool.acquire() as conn:
            newer = await conn.fetch("SELECT step, attempt, status, approved_by FROM workflow_step_executions "
                                     "WHERE instance_id = $1 ORDER BY step, attempt", h.instance_id)
        rows = await a.apply_events(h.events[first:middle], {tp: 6})  # the old owner's late batch
        assert rows.applied == 0 and rows.skipped == middle - first
        async with a.pool.acquire() as conn:
            after = await conn.fetch("SELECT step, attempt, status, approved_by FROM workflow_step_executions "
                                     "WHERE instance_id = $1 ORDER BY step, attempt", h.instance_id)
            last_seq = await conn.fetchval("SELECT last_seq FROM workflow_instances WHERE id = $1", h.instance_id)
            stored = await conn.fetchval("SELECT next_offset FROM projector_offsets WHERE topic = $1", tp.topic)
        assert [tuple(r) for r in after] == [tuple(r) for r in newer]
        assert last_seq == h.events[-1].seq
        assert stored == 9
    finally:
        await a.pool.close()
        await b.pool.close()


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


async def test_only_the_projectors_own_commits_are_asynchronous(database_url):
    """docs/adr/0020: the projector's session commits without waiting for the WAL flush (what a crash loses
    of it is projected again: the previous test), set by the projector itself, not by the server; every other
    session keeps the server's setting."""
    import asyncpg

    query = "SELECT setting, source FROM pg_settings WHERE name = 'synchronous_commit'"
    pool = await open_pool(database_url)
    other = await asyncpg.connect(database_url)
    try:
        assert tuple(await pool.fetchrow(query)) == ("off", "client")
        assert (await other.fetchrow(query))["source"] != "client"
    finally:
        await other.close()
        await pool.close()


RECOUNTS = {
    # rollup (migration 0011) -> the same figures counted from the read model, for the tenant and template
    "instances": ("SELECT hour, status, n FROM analytics_instance_counts WHERE tenant_id = $1 AND template_id = $2 "
                  "AND n <> 0",
                  "SELECT date_trunc('hour', created_at, 'UTC'), status, count(*) FROM workflow_instances "
                  "WHERE tenant_id = $1 AND template_id = $2 GROUP BY 1, 2"),
    "finished": ("SELECT hour, status, n FROM analytics_finished_hourly WHERE tenant_id = $1 AND template_id = $2 "
                 "AND n <> 0",
                 "SELECT date_trunc('hour', completed_at, 'UTC'), status, count(*) FROM workflow_instances "
                 "WHERE tenant_id = $1 AND template_id = $2 AND status IN ('COMPLETED', 'FAILED') "
                 "AND completed_at IS NOT NULL GROUP BY 1, 2"),
    "steps": ("SELECT hour, step, executions, timed, round(seconds, 6) FROM analytics_step_hourly "
              "WHERE tenant_id = $1 AND template_id = $2 AND executions <> 0",
              "SELECT date_trunc('hour', instance_created_at, 'UTC'), step, count(*), "
              "count(*) FILTER (WHERE started_at IS NOT NULL AND ended_at IS NOT NULL), "
              "round(coalesce(sum(extract(epoch FROM ended_at - started_at)), 0), 6) "
              "FROM workflow_step_executions WHERE tenant_id = $1 AND template_id = $2 GROUP BY 1, 2"),
    "completions": ("SELECT instance_id, seconds FROM analytics_completions WHERE tenant_id = $1 AND template_id = $2",
                    "SELECT id, extract(epoch FROM completed_at - created_at)::double precision "
                    "FROM workflow_instances WHERE tenant_id = $1 AND template_id = $2 AND status = 'COMPLETED'"),
    "approval steps": ("SELECT instance_id, step, attempt, status, seconds FROM analytics_approval_steps "
                       "WHERE tenant_id = $1 AND template_id = $2",
                       "SELECT instance_id, step, attempt, status, "
                       "extract(epoch FROM ended_at - started_at)::double precision FROM workflow_step_executions "
                       "WHERE tenant_id = $1 AND template_id = $2 AND type = 'approval' AND ended_at IS NOT NULL"),
    "approvers": ("SELECT instance_id, step, attempt, approver FROM analytics_approver_decisions "
                  "WHERE tenant_id = $1 AND template_id = $2",
                  "SELECT DISTINCT instance_id, step, attempt, a FROM workflow_step_executions, unnest(approved_by) a "
                  "WHERE tenant_id = $1 AND template_id = $2 AND type = 'approval' AND ended_at IS NOT NULL"),
}


async def test_the_rollups_equal_a_recount_after_mixed_batches(database_url):
    """The analytics rollups as the projector's batches leave them (issue 15: whatever maintains them, per row,
    per statement or in the batch's own statement, must give these answers): batches that start instances,
    move others along and end some of them (completed, rejected, waiting), several instances per batch, each
    instance written again by a later batch; every rollup of the tenant and template equals a recount from
    the read model's own rows."""
    projector = Projector(bootstrap_servers="unused:9092", database_url=database_url,
                          group_id=f"projector-rollups-{uuid.uuid4().hex[:8]}")
    projector.pool = await open_pool(database_url)
    try:
        tp = TopicPartition(f"test.rollups.{uuid.uuid4().hex[:8]}", 0)
        harnesses = [procurement(f"wfi_rollup_{uuid.uuid4().hex[:12]}") for _ in range(5)]
        seen = dict.fromkeys((h.instance_id for h in harnesses), 0)
        offset = 0

        async def project(chosen) -> None:
            nonlocal offset
            batch = []
            for h in chosen:
                batch += h.events[seen[h.instance_id]:]
                seen[h.instance_id] = len(h.events)
            offset += 1
            await projector.apply_events(batch, {tp: offset})

        await project(harnesses[:3])
        for h in harnesses[:4]:
            h.approve(2, human("cfo_1", "cfo"))
        harnesses[4].reject(2, human("cfo_1", "cfo"))
        await project(harnesses[1:])  # two of them new to the read model, three written again
        for h in harnesses[:2]:
            h.approve(3, human("fm_1", "finance_manager"))
            h.succeed(4, {"transfer_id": f"tr_{h.instance_id}"})
        harnesses[2].reject(3, human("fm_1", "finance_manager"))
        await project(harnesses)
        statuses = {h.status.value for h in harnesses}
        assert {"COMPLETED", "ACTIVE", "FAILED"} <= statuses, statuses

        async with projector.pool.acquire() as conn:
            tenant, template = await conn.fetchrow(
                "SELECT tenant_id, template_id FROM workflow_instances WHERE id = $1", harnesses[0].instance_id)
            for name, (rollup, recount) in RECOUNTS.items():
                kept = sorted(tuple(r) for r in await conn.fetch(rollup, tenant, template))
                counted = sorted(tuple(r) for r in await conn.fetch(recount, tenant, template))
                assert kept == counted, name
                assert counted, name  # the batches gave every rollup something to hold
    finally:
        await projector.pool.close()
