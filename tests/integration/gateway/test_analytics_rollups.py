"""Analytics from the rollups (store/migrations/0011, ADR 12) answers exactly what the gateway computed from
the read model's own rows before them: `reference_*` below are the earlier queries, verbatim. A tenant's
instances and step executions are written straight into the read model (statuses, attempts, durations
with and without ends, approvers, creation times inside hours and on them), then changed the way the
projector changes them (status moves, steps ending, upserts) and partly deleted; after every round each
read, for every filter, is compared with its reference: all templates, one template, `created_after` inside
an hour and on the hour, throughput by hour and by day."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

pytestmark = pytest.mark.asyncio(loop_scope="session")

PCT = "percentile_cont(ARRAY[0.5, 0.9, 0.99]) WITHIN GROUP (ORDER BY {x})"
STATUSES = ["ACTIVE", "COMPLETED", "COMPLETED", "FAILED", "CANCELLED", "PAUSED"]
STEP_STATUSES = ["RUNNING", "COMPLETED", "APPROVED", "REJECTED", "FAILED", "TIMED_OUT"]


def _percentiles(row) -> dict[str, Any]:
    values = row["p"] if row and row["p"] else [None, None, None]
    return {"count": row["n"] if row else 0, "p50": values[0], "p90": values[1], "p99": values[2]}


async def reference_analytics(conn, tenant_id: str, template_id: str | None, after: datetime | None) -> dict:
    """getAnalytics as gateway/operations.py computed it before the rollups (joins over the read model)."""
    args: list[Any] = [tenant_id]
    where = ["i.tenant_id = $1"]
    if template_id is not None:
        args.append(template_id)
        where.append(f"i.template_id = ${len(args)}")
    if after is not None:
        args.append(after)
        where.append(f"i.created_at > ${len(args)}")
    cond = " AND ".join(where)
    completion = "extract(epoch FROM i.completed_at - i.created_at)"
    duration = "extract(epoch FROM s.ended_at - s.started_at)"
    counts = await conn.fetch(f"SELECT i.template_id, i.status, count(*) AS n FROM workflow_instances i "
                              f"WHERE {cond} GROUP BY 1, 2", *args)
    overall = await conn.fetchrow(f"SELECT count(*) AS n, {PCT.format(x=completion)} AS p FROM "
                                  f"workflow_instances i WHERE {cond} AND i.status = 'COMPLETED'", *args)
    per_template_times = await conn.fetch(
        f"SELECT i.template_id, count(*) AS n, {PCT.format(x=completion)} AS p FROM workflow_instances i "
        f"WHERE {cond} AND i.status = 'COMPLETED' GROUP BY 1", *args)
    latency = await conn.fetchrow(
        f"SELECT count(*) AS n, {PCT.format(x=duration)} AS p FROM workflow_step_executions s "
        f"JOIN workflow_instances i ON i.id = s.instance_id WHERE {cond} AND s.type = 'approval' "
        f"AND s.ended_at IS NOT NULL AND s.status IN ('APPROVED', 'REJECTED')", *args)
    steps = await conn.fetch(
        f"SELECT i.template_id, s.step, max(s.name) AS name, count(*) AS executions, "
        f"avg({duration}) FILTER (WHERE s.ended_at IS NOT NULL) AS avg_seconds "
        f"FROM workflow_step_executions s JOIN workflow_instances i ON i.id = s.instance_id WHERE {cond} "
        f"GROUP BY 1, 2", *args)
    by_status: dict[str, int] = defaultdict(int)
    per_template: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in counts:
        by_status[r["status"]] += r["n"]
        per_template[r["template_id"]][r["status"]] += r["n"]
    times = {r["template_id"]: _percentiles(r) for r in per_template_times}
    stats = [{"template_id": r["template_id"], "step": r["step"], "name": r["name"] or "",
              "executions": r["executions"],
              "avg_seconds": float(r["avg_seconds"]) if r["avg_seconds"] is not None else None} for r in steps]
    busiest = sorted(stats, key=lambda s: (-s["executions"], s["template_id"], s["step"]))[:10]
    slowest = sorted((s for s in stats if s["avg_seconds"] is not None),
                     key=lambda s: (-s["avg_seconds"], s["template_id"], s["step"]))[:10]
    return {
        "counts_by_status": dict(by_status),
        "completion_time_seconds": _percentiles(overall),
        "approval_latency_seconds": _percentiles(latency),
        "busiest_steps": busiest,
        "slowest_steps": slowest,
        "per_template": [{"template_id": t, "counts_by_status": dict(c),
                          "completion_time_seconds": times.get(t, {"count": 0, "p50": None, "p90": None, "p99": None})}
                         for t, c in sorted(per_template.items())],
    }


async def reference_approvers(conn, tenant_id: str, since: datetime, template_id: str | None) -> list[dict]:
    """The throughput endpoint's busiest approvers as gateway/analytics.py computed them before the rollups."""
    args: list[Any] = [tenant_id, since]
    template = ""
    if template_id:
        args.append(template_id)
        template = f" AND i.template_id = ${len(args)}"
    rows = await conn.fetch(
        f"""SELECT a.approver, count(*) AS decisions,
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM s.ended_at - s.started_at))
                     AS p50_seconds
            FROM workflow_instances i JOIN workflow_step_executions s ON s.instance_id = i.id
            CROSS JOIN LATERAL unnest(s.approved_by) AS a(approver)
            WHERE i.tenant_id = $1 AND i.created_at >= $2{template} AND s.type = 'approval'
              AND s.ended_at IS NOT NULL
            GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 10""", *args)
    return [{"approver": r["approver"], "decisions": r["decisions"],
             "p50_seconds": float(r["p50_seconds"]) if r["p50_seconds"] is not None else None} for r in rows]


async def reference_series(conn, tenant_id: str, bucket: str, since: datetime, template_id: str | None) -> list:
    """The throughput endpoint's series as gateway/analytics.py computed it before the rollups."""
    args: list[Any] = [tenant_id, since]
    template = ""
    if template_id:
        args.append(template_id)
        template = f" AND i.template_id = ${len(args)}"
    rows = await conn.fetch(
        f"""SELECT date_trunc('{bucket}', t.at) AS bucket, t.kind, count(*) AS n FROM (
              SELECT i.created_at AS at, 'started' AS kind FROM workflow_instances i
               WHERE i.tenant_id = $1 AND i.created_at >= $2{template}
              UNION ALL
              SELECT i.completed_at, lower(i.status) FROM workflow_instances i
               WHERE i.tenant_id = $1 AND i.completed_at >= $2 AND i.status IN ('COMPLETED', 'FAILED'){template}
            ) t GROUP BY 1, 2 ORDER BY 1""", *args)
    series: dict[datetime, dict[str, int]] = {}
    for r in rows:
        series.setdefault(r["bucket"], {"started": 0, "completed": 0, "failed": 0})[r["kind"]] = r["n"]
    return [{"at": at.isoformat(), **counts} for at, counts in sorted(series.items())]


def _at(now: datetime, rng: random.Random) -> datetime:
    # within the last 40 hours, at any second and microsecond, some exactly on an hour
    moment = now - timedelta(seconds=rng.randrange(0, 40 * 3600), microseconds=rng.randrange(0, 10**6))
    return moment.replace(minute=0, second=0, microsecond=0) if rng.random() < 0.1 else moment


async def write_tenant(conn, tenant_id: str, rng: random.Random, count: int) -> list[str]:
    now = datetime.now(UTC)
    ids = []
    for n in range(count):
        iid = f"{tenant_id}_i{n}"
        ids.append(iid)
        created = _at(now, rng)
        status = rng.choice(STATUSES)
        completed = created + timedelta(seconds=rng.uniform(1, 5000)) if status in ("COMPLETED", "FAILED") else None
        if status == "COMPLETED" and rng.random() < 0.05:
            completed = None  # unknown end: counted, no duration
        await conn.execute(
            "INSERT INTO workflow_instances (id, tenant_id, template_id, template_version, status, created_at, "
            "updated_at, completed_at) VALUES ($1, $2, $3, 1, $4, $5, $5, $6)",
            iid, tenant_id, f"{tenant_id}_t{n % 3}", status, created, completed)
        for step in range(1, rng.randrange(1, 4) + 1):
            for attempt in range(1, rng.choice([1, 1, 2]) + 1):
                kind = "approval" if step % 2 == 0 or rng.random() < 0.3 else "condition"
                started = created + timedelta(seconds=rng.uniform(0, 100)) if rng.random() < 0.95 else None
                ended = (created + timedelta(seconds=rng.uniform(100, 9000))) if rng.random() < 0.7 else None
                approvers = rng.sample(["ann", "bob", "cy", "di"], rng.randrange(0, 3)) if kind == "approval" else []
                await conn.execute(
                    "INSERT INTO workflow_step_executions (instance_id, step, attempt, name, type, status, "
                    "started_at, ended_at, approved_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                    iid, step, attempt, f"Step {step}", kind, rng.choice(STEP_STATUSES), started, ended, approvers)
    return ids


async def change_like_the_projector(conn, ids: list[str], rng: random.Random) -> None:
    """Status moves, steps ending and re-upserted (the projector's ON CONFLICT path), deletions."""
    for iid in rng.sample(ids, len(ids) // 4):
        status = rng.choice(STATUSES)
        await conn.execute("UPDATE workflow_instances SET status = $2, completed_at = CASE WHEN $2 IN "
                           "('COMPLETED', 'FAILED') THEN created_at + interval '77 seconds' END WHERE id = $1",
                           iid, status)
    for iid in rng.sample(ids, len(ids) // 4):
        await conn.execute(
            """INSERT INTO workflow_step_executions (instance_id, step, attempt, name, type, status, started_at,
                   ended_at, approved_by)
               SELECT $1, 1, 1, 'Step 1', 'approval', 'APPROVED', created_at, created_at + interval '42 seconds',
                      ARRAY['ann', 'eve'] FROM workflow_instances WHERE id = $1
               ON CONFLICT (instance_id, step, attempt) DO UPDATE SET status = EXCLUDED.status,
                   type = EXCLUDED.type, started_at = EXCLUDED.started_at, ended_at = EXCLUDED.ended_at,
                   approved_by = EXCLUDED.approved_by""", iid)
    gone = rng.sample(ids, len(ids) // 10)
    await conn.execute("DELETE FROM workflow_step_executions WHERE instance_id = ANY($1::text[])", gone[::2])
    await conn.execute("DELETE FROM workflow_instances WHERE id = ANY($1::text[])", gone)
    for iid in gone:
        ids.remove(iid)


async def test_analytics_from_rollups_equals_the_reads_over_the_read_model(api_world, tenant):
    rng = random.Random(20261130)
    conn = await asyncpg.connect(api_world.database_url)
    try:
        ids = await write_tenant(conn, tenant.id, rng, 300)
        for round_ in range(2):
            now = datetime.now(UTC)
            inside = now - timedelta(hours=13, minutes=17, seconds=3)
            on_hour = (now - timedelta(hours=20)).replace(minute=0, second=0, microsecond=0)
            for template_id in (None, f"{tenant.id}_t1"):
                for after in (None, inside, on_hour):
                    query = {k: v for k, v in (("template_id", template_id),
                                               ("created_after", after and after.isoformat())) if v}
                    _, got = await api_world.call("GET", "/v1/workflows/analytics", tenant, "viewer", expect=200,
                                                  params=query)
                    want = await reference_analytics(conn, tenant.id, template_id, after)
                    assert got == want, f"round {round_}, {query}"
                for bucket, periods in (("hour", 48), ("day", 3)):
                    query = {"bucket": bucket, "periods": str(periods), **({"template_id": template_id}
                                                                           if template_id else {})}
                    _, got = await api_world.call("GET", "/v1/workflows/analytics/throughput", tenant, "viewer",
                                                  expect=200, params=query)
                    since = datetime.fromisoformat(got["since"])
                    assert got["series"] == await reference_series(conn, tenant.id, bucket, since, template_id), query
                    assert sum(b["completed"] + b["failed"] for b in got["series"]) > 0, "finished instances compared"
                    assert got["busiest_approvers"] == await reference_approvers(conn, tenant.id, since,
                                                                                 template_id), query
            assert got["busiest_approvers"], "the data has approvers: the comparison compared something"
            await change_like_the_projector(conn, ids, rng)
    finally:
        await conn.close()
