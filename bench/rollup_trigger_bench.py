"""What the analytics rollups' triggers cost PostgreSQL per projector-like statement (issue 15).

A statement shaped like the projector's batch (`store/projector.py` WRITE_BATCH: the instances and their step
executions upserted in one statement) is run for `--workflows` made-up workflows, `--per-batch` of them per
statement, each through a procurement-like life (eight batches: started, step 1 ends, two approvals asked
and decided, the transfer runs and ends). The backend's CPU (from /proc, the server must be on this host)
over those statements, per workflow and per statement, is what the installed triggers and the writes cost.

Compare trigger sets by installing one before each run (`--install X`, alternating, and `per_statement`
again at the end). The sets are read from where they live, never copied: `per_statement` is migration
0014 as it is, `row_0011` the triggers section of migration 0011 (after its backfill), `none` takes every
analytics trigger away (their cost, by difference; `bench/rollup_variants/none.sql`), `fewer_statements` is
0011's with fewer statements per row (tried on branch `pgcpu`, not kept; docs/performance.md, "The analytics
triggers and the approval handler's mail"; `bench/rollup_variants/fewer_statements.sql`, its function bodies
over 0011's triggers). Each set is
installed over `none`, so whichever was there before is gone.
`--folded` runs instead a statement that writes the rollups itself, as CTEs fed by its upserts' RETURNING and
the rows they replace (read under the rows' locks first, as the projector's `current`), built from
migration 0014's SQL: install `none` first. Run it on a measurement stack only: its rows are
written under the tenant `bench-rollups` and deleted after.

    .venv/bin/python -m bench.rollup_trigger_bench --install row_0011
    .venv/bin/python -m bench.rollup_trigger_bench --per-batch 1 --workflows 300
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import time
import uuid
from pathlib import Path

import asyncpg

from schemas.settings import env

TENANT = "bench-rollups"

STATEMENT = f"""
WITH inst AS (
    INSERT INTO workflow_instances AS w (id, tenant_id, template_id, template_version, status, created_at,
        updated_at, completed_at, last_seq)
    SELECT id, '{TENANT}', 'bench-template', 1, st, now() - interval '1 minute', now(),
           CASE WHEN st = 'COMPLETED' THEN now() END, seq
    FROM unnest($1::text[], $2::text[], $3::bigint[]) AS x(id, st, seq)
    ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, completed_at = EXCLUDED.completed_at,
        last_seq = EXCLUDED.last_seq, updated_at = EXCLUDED.updated_at
),
steps AS (
    INSERT INTO workflow_step_executions AS s (instance_id, step, attempt, name, type, status, started_at,
        ended_at, approved_by, tenant_id, template_id, instance_created_at)
    SELECT id, step, 1, 'step ' || step, CASE WHEN step IN (2, 3) THEN 'approval' ELSE 'action' END, sst,
           now() - interval '1 second', CASE WHEN sst <> 'RUNNING' THEN now() END,
           CASE WHEN sst = 'APPROVED' THEN ARRAY['approver'] ELSE '{{}}'::text[] END,
           '{TENANT}', 'bench-template', date_trunc('minute', now())
    FROM unnest($1::text[], $4::int[], $5::text[]) AS y(id, step, sst)
    ON CONFLICT (instance_id, step, attempt) DO UPDATE SET status = EXCLUDED.status,
        ended_at = EXCLUDED.ended_at, approved_by = EXCLUDED.approved_by
)
SELECT 1
"""

VARIANTS = Path(__file__).resolve().parent / "rollup_variants"
MIGRATIONS = Path(__file__).resolve().parent.parent / "store" / "migrations"
PER_STATEMENT = MIGRATIONS / "0014_analytics_rollups_per_statement.sql"
TRIGGERS_MARK = re.compile(r"^-- -+ triggers$", re.M)  # the line that opens migration 0011's triggers section


def trigger_set(name: str) -> str:
    """The SQL that installs trigger set `name` over none at all (see the module's why)."""
    none = (VARIANTS / "none.sql").read_text()
    if name == "none":
        return none
    if name == "per_statement":
        return none + PER_STATEMENT.read_text()
    if name == "row_0011":
        parts = TRIGGERS_MARK.split((MIGRATIONS / "0011_analytics_rollups.sql").read_text())
        assert len(parts) == 2, "migration 0011 no longer has one triggers section mark"
        return none + "BEGIN;\n" + parts[1] + "\nCOMMIT;\n"
    # a variant of 0011's (fewer_statements): its own function bodies over 0011's triggers, which call them
    return trigger_set("row_0011") + (VARIANTS / f"{name}.sql").read_text()


async def install(database_url: str, name: str) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(trigger_set(name))
    finally:
        await connection.close()


def folded_statement() -> str:
    """STATEMENT with the rollups as its own CTEs: the per-statement variant's instance and step templates,
    their CTEs prefixed (`i_`, `s_`) and fed by the upserts' RETURNING (new) and the rows read before (old)."""
    sql = PER_STATEMENT.read_text()
    instances, steps = re.findall(r"\$sql\$\nWITH\n(.*?)\nSELECT 1\$sql\$", sql, re.S)

    def part(template: str, prefix: str) -> str:
        for name in re.findall(r"^(\w+) AS \(", template, re.M):
            template = re.sub(rf"(?<![\w.]){name}(?!\w)", prefix + name, template)
        return template.replace("%1$s", prefix + "old").replace("%2$s", prefix + "new")

    head, _, _ = STATEMENT.partition("SELECT 1")
    head = head.replace("WITH inst AS (", """WITH
i_cur AS (
    SELECT id, tenant_id, template_id, status, created_at, completed_at FROM workflow_instances
    WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE
),
s_old AS (
    SELECT s.instance_id, s.step, s.attempt, s.tenant_id, s.template_id, s.instance_created_at, s.name, s.type,
           s.status, s.started_at, s.ended_at, s.approved_by
    FROM workflow_step_executions s JOIN unnest($1::text[], $4::int[]) AS k(id, step)
      ON s.instance_id = k.id AND s.step = k.step AND s.attempt = 1
),
inst AS (""")
    # the reads come before the writes (as the projector's `ok` makes them): a row this statement already
    # wrote is not returned by a FOR UPDATE later in it
    head = head.replace("AS x(id, st, seq)\n", "AS x(id, st, seq) WHERE (SELECT count(*) FROM i_cur) >= 0\n")
    head = head.replace("AS y(id, step, sst)\n", "AS y(id, step, sst) WHERE (SELECT count(*) FROM s_old) >= 0\n")
    head = head.replace("last_seq = EXCLUDED.last_seq, updated_at = EXCLUDED.updated_at\n",
                        "last_seq = EXCLUDED.last_seq, updated_at = EXCLUDED.updated_at\n"
                        "    RETURNING id, tenant_id, template_id, status, created_at, completed_at\n")
    head = head.replace("approved_by = EXCLUDED.approved_by\n",
                        "approved_by = EXCLUDED.approved_by\n    RETURNING instance_id, step, attempt, tenant_id, "
                        "template_id, instance_created_at, name, type, status, started_at, ended_at, approved_by\n")
    return (head.rstrip() + ",\ni_new AS (SELECT * FROM inst),\n"
            "i_old AS (SELECT * FROM i_cur WHERE id IN (SELECT id FROM inst)),\n"
            "s_new AS (SELECT * FROM steps),\n" + part(instances, "i_") + ",\n" + part(steps, "s_") + "\nSELECT 1\n")


# a procurement-like life: (instance status, step, step status) written by each of its batches
LIFE = [("RUNNING", 1, "RUNNING"), ("RUNNING", 1, "COMPLETED"), ("WAITING", 2, "RUNNING"),
        ("WAITING", 2, "APPROVED"), ("WAITING", 3, "RUNNING"), ("RUNNING", 3, "APPROVED"),
        ("RUNNING", 4, "RUNNING"), ("COMPLETED", 4, "COMPLETED")]


def backend_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run(database_url: str, per_batch: int, workflows: int, statement: str = STATEMENT) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        pid = await conn.fetchval("SELECT pg_backend_pid()")
        triggers = await conn.fetchval(
            "SELECT string_agg(tgname, ',' ORDER BY tgname) FROM pg_trigger WHERE NOT tgisinternal "
            "AND tgname LIKE 'analytics%'")
        await conn.execute(statement, [], [], [], [], [])  # prepared before the clock starts
        ids = [f"bench-{uuid.uuid4()}" for _ in range(workflows)]
        statements, cpu0, wall0 = 0, backend_cpu(pid), time.perf_counter()
        for first in range(0, workflows, per_batch):
            group = ids[first:first + per_batch]
            for seq, (status, step, step_status) in enumerate(LIFE):
                n = len(group)
                await conn.execute(statement, group, [status] * n, [seq] * n, [step] * n, [step_status] * n)
                statements += 1
        cpu, wall = backend_cpu(pid) - cpu0, time.perf_counter() - wall0
        folded = ", rollups in the statement" if statement != STATEMENT else ""
        print(f"triggers {triggers or '-'}{folded}\n{per_batch} per batch: {statements} statements, backend CPU "
              f"{1000 * cpu / workflows:.3f} ms per workflow, {1e6 * cpu / statements:.0f} us per statement "
              f"(wall {1000 * wall / workflows:.2f} ms per workflow)")
    finally:
        await conn.execute("DELETE FROM workflow_step_executions WHERE tenant_id = $1", TENANT)
        await conn.execute("DELETE FROM workflow_instances WHERE tenant_id = $1", TENANT)
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-batch", type=int, default=1, help="workflows per statement")
    parser.add_argument("--workflows", type=int, default=300)
    parser.add_argument("--folded", action="store_true", help="the rollups as CTEs of the statement itself")
    parser.add_argument("--install", choices=["row_0011", "per_statement", "none", "fewer_statements"],
                        help="install this trigger set and exit")
    args = parser.parse_args()
    if args.install:
        asyncio.run(install(env("DATABASE_URL"), args.install))
        return
    asyncio.run(run(env("DATABASE_URL"), args.per_batch, args.workflows,
                    folded_statement() if args.folded else STATEMENT))


if __name__ == "__main__":
    main()
