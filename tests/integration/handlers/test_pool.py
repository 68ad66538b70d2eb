"""The handlers' PostgreSQL pool gives a connection back without a reset round trip (issue 15).

Why: asyncpg's default reset (`pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`) ran on every
release, three times per approval; a third of the approval handler's database work was resetting sessions
that nothing had changed. A transaction left open is still rolled back.
"""

from __future__ import annotations

import pytest

from handlers.main import open_pool

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_a_released_connection_costs_no_query(database_url):
    pool = await open_pool(database_url)
    try:
        seen: list[str] = []

        def logged(record) -> None:
            seen.append(record.query)

        for n in range(3):
            async with pool.acquire() as conn:
                conn.add_query_logger(logged)  # one logger per connection, however often it is added
                assert await conn.fetchval(f"SELECT {n}") == n
            # released: anything the pool sends now is logged too
        assert seen == ["SELECT 0", "SELECT 1", "SELECT 2"]
    finally:
        await pool.close()


async def test_a_transaction_left_open_is_still_rolled_back(database_url):
    pool = await open_pool(database_url)
    try:
        async with pool.acquire() as conn:
            await conn.execute("BEGIN")
            await conn.execute("CREATE TEMP TABLE IF NOT EXISTS pool_probe (n int)")
        held = [await pool.acquire() for _ in range(4)]  # every connection of the pool, the used one too
        try:
            for again in held:
                assert not again.is_in_transaction()
                assert await again.fetchval("SELECT to_regclass('pg_temp.pool_probe')") is None
        finally:
            for again in held:
                await pool.release(again)
    finally:
        await pool.close()
