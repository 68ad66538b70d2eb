"""Apply the read model's migrations (`store/migrations/*.sql`): each once, in name order, one transaction each.

Why here and not in `deploy/`: production needs its schema too, and it should not have to ship the local-stack
tooling to get it. `python -m store.migrate` (with DATABASE_URL) applies what is missing; the local stack and
the Docker topics job call the same function.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import asyncpg

from schemas.settings import env

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def migration_files(directory: Path = MIGRATIONS_DIR) -> list[Path]:
    return sorted(directory.glob("*.sql"))


async def migrate_async(database_url: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply `store/migrations/*.sql` in name order, each once, each in its own transaction."""
    conn = await asyncpg.connect(database_url, timeout=10)
    applied: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock(7260431)")  # one migrator at a time
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for path in migration_files(directory):
            version = path.stem
            if version in done:
                continue
            async with conn.transaction():
                await conn.execute(path.read_text())
                await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
            applied.append(version)
        await conn.execute("SELECT pg_advisory_unlock(7260431)")
    finally:
        await conn.close()
    return applied


def main() -> int:
    applied = asyncio.run(migrate_async(env("DATABASE_URL")))
    print(f"applied {len(applied)} migration(s): {', '.join(applied) or '-'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
