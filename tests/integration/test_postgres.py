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
