"""The embedded PostgreSQL of the local stack accepts connections and carries the migrations."""

from __future__ import annotations

import asyncpg
import pytest

from store import migrate

pytestmark = pytest.mark.integration


async def test_postgres_accepts_connections_and_has_migrations(database_url):
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT current_database()") == "flowline"
        version = await conn.fetchval("SHOW server_version")
        assert int(version.split(".")[0]) >= 17
        assert await conn.fetchval("SELECT to_regclass('public.schema_migrations') IS NOT NULL")
        applied = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        assert {p.stem for p in migrate.migration_files()} <= applied
        assert "0001_init" in applied
    finally:
        await conn.close()


async def test_migrations_are_idempotent(database_url):
    assert await migrate.migrate_async(database_url) == []


async def test_analyze_skips_the_documents_no_query_filters_on(database_url):
    """Issue 15: autovacuum's ANALYZE after a load sorted a 30,000-row sample of every jsonb document of the
    read model (most of the idle stack's CPU in the minute after a load); the documents only ever returned
    get no statistics (migration 0013), the columns queries filter on keep theirs."""
    conn = await asyncpg.connect(database_url)
    try:
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO workflow_transitions (instance_id, seq, tenant_id, event_type, details, at) "
                "SELECT 'stats-' || g, 1, 'stats-tenant', 'InstanceStarted', jsonb_build_object('n', g), now() "
                "FROM generate_series(1, 200) g")
            await conn.execute("ANALYZE workflow_transitions")
            analyzed = {r["attname"] for r in await conn.fetch(
                "SELECT attname FROM pg_stats WHERE schemaname = 'public' AND tablename = 'workflow_transitions'")}
            raise _Rollback(analyzed)
    except _Rollback as done:
        analyzed = done.args[0]
    finally:
        await conn.close()
    assert {"instance_id", "tenant_id", "event_type", "command_id", "at"} <= analyzed
    assert "details" not in analyzed


class _Rollback(Exception):
    """Leaves the test's rows out of the shared read model."""
