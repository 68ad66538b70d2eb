"""Health, metrics, the OpenAPI document, its HTML page, and analytics (story 29.11)."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway import openapi
from gateway.auth import READ
from gateway.calls import Call, json_response

MAX_PROJECTOR_LAG = 10_000
PROJECTOR_STALE_SECONDS = 30


async def health(call: Call) -> web.Response:
    gw = call.gateway
    checks: dict[str, dict[str, Any]] = {}
    try:
        if gw.producer is None:
            raise ConnectionError("not reachable since the gateway started")
        await asyncio.wait_for(gw.producer.client.fetch_all_metadata(), 3)
        brokers = len(gw.producer.client.cluster.brokers())
        checks["broker"] = {"ok": brokers > 0, "brokers": brokers}
    except Exception as exc:
        checks["broker"] = {"ok": False, "error": type(exc).__name__}
    try:
        row = await asyncio.wait_for(gw.pool.fetchrow(
            "SELECT lag, events_applied, extract(epoch FROM now() - updated_at) AS age FROM projector_status "
            "WHERE consumer_group = $1", gw.settings.projector_group), 3)
        checks["database"] = {"ok": True}
        if row is None:
            checks["projector"] = {"ok": False, "error": "the projector has not reported yet"}
        else:
            age = float(row["age"])
            checks["projector"] = {"ok": row["lag"] <= MAX_PROJECTOR_LAG and age <= PROJECTOR_STALE_SECONDS,
                                   "lag": row["lag"], "events_applied": row["events_applied"],
                                   "seconds_since_report": round(age, 1)}
    except Exception as exc:
        checks["database"] = {"ok": False, "error": type(exc).__name__}
        checks.setdefault("projector", {"ok": False, "error": "database unavailable"})
    ok = all(c["ok"] for c in checks.values())
    return json_response({"status": "ok" if ok else "degraded", "checks": checks}, 200 if ok else 503)


async def metrics(call: Call) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi_document(call: Call) -> web.Response:
    return web.Response(text=json.dumps(openapi.DOCUMENT), content_type="application/json")


async def docs(call: Call) -> web.Response:
    return web.Response(text=openapi.docs_html(), content_type="text/html")


def _percentiles(row) -> dict[str, Any]:
    values = row["p"] if row and row["p"] else [None, None, None]
    return {"count": row["n"] if row else 0, "p50": values[0], "p90": values[1], "p99": values[2]}


PCT = "percentile_cont(ARRAY[0.5, 0.9, 0.99]) WITHIN GROUP (ORDER BY {x})"


def hour_after(moment: datetime) -> datetime:
    """The first whole UTC hour after `moment`: rollup hours from here on hold only instances created after
    it; the instances between `moment` and this hour are read from the read model itself."""
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)


async def analytics(call: Call) -> web.Response:
    """Story 29.11's numbers for the caller's tenant, optionally one template and instances created after a
    time. Read from the rollups the database keeps as the projector writes (store/migrations/0011, ADR 12):
    counters per UTC hour for counts and per-step averages, narrow per-value tables for the exact
    percentiles. A `created_after` inside an hour takes that partial hour from the read model's own rows.
    The five reads are independent and run concurrently on pooled connections."""
    me = call.me
    me.require(READ, "read analytics")
    args: list[Any] = [me.tenant_id]
    rollup, facts, raw = ["tenant_id = $1"], ["tenant_id = $1"], ["i.tenant_id = $1"]
    template_id = call.query("template_id")
    if template_id is not None:
        args.append(template_id)
        for where, prefix in ((rollup, ""), (facts, ""), (raw, "i.")):
            where.append(f"{prefix}template_id = ${len(args)}")
    fact_args = list(args)  # the per-value tables filter by creation time itself: no hour boundary
    after = call.query("created_after")
    partial = "false"  # no partial hour to read from the read model
    if after is not None:
        args += [after, hour_after(after)]
        fact_args.append(after)
        a, h = f"${len(args) - 1}", f"${len(args)}"
        rollup.append(f"hour >= {h}")
        facts.append(f"created_at > {a}")
        partial = f"i.created_at > {a} AND i.created_at < {h}"
    r, f, i = (" AND ".join(w) for w in (rollup, facts, raw))
    pool = call.gateway.pool
    counts, times, latency, steps = await asyncio.gather(
        pool.fetch(f"""SELECT template_id, status, sum(n)::bigint AS n FROM (
                         SELECT template_id, status, n FROM analytics_instance_counts WHERE {r} AND n > 0
                         UNION ALL
                         SELECT i.template_id, i.status, count(*) FROM workflow_instances i
                          WHERE {i} AND {partial} GROUP BY 1, 2) c
                       GROUP BY 1, 2 HAVING sum(n) > 0""", *args),
        # one scan for the tenant's and each template's completion times (template_id NULL: all of them)
        pool.fetch(f"""SELECT CASE WHEN grouping(template_id) = 1 THEN NULL ELSE template_id END AS template_id,
                              grouping(template_id) AS overall, count(*) AS n, {PCT.format(x="seconds")} AS p
                       FROM analytics_completions WHERE {f} GROUP BY GROUPING SETS ((), (template_id))""",
                   *fact_args),
        pool.fetchrow(f"""SELECT count(*) AS n, {PCT.format(x="seconds")} AS p FROM analytics_approval_steps
                          WHERE {f} AND status IN ('APPROVED', 'REJECTED')""", *fact_args),
        pool.fetch(f"""SELECT template_id, step, max(name) AS name, sum(executions)::bigint AS executions,
                              sum(seconds) / nullif(sum(timed), 0) AS avg_seconds FROM (
                         SELECT template_id, step, name, executions, timed, seconds FROM analytics_step_hourly
                          WHERE {r} AND executions > 0
                         UNION ALL
                         SELECT i.template_id, s.step, s.name, 1,
                                (s.started_at IS NOT NULL AND s.ended_at IS NOT NULL)::int,
                                coalesce(extract(epoch FROM s.ended_at - s.started_at), 0)
                         FROM workflow_instances i JOIN workflow_step_executions s ON s.instance_id = i.id
                         WHERE {i} AND {partial}) x
                       GROUP BY 1, 2 HAVING sum(executions) > 0""", *args))
    by_status: dict[str, int] = defaultdict(int)
    per_template: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in counts:
        by_status[row["status"]] += row["n"]
        per_template[row["template_id"]][row["status"]] += row["n"]
    overall = next((row for row in times if row["overall"] == 1), None)
    by_template = {row["template_id"]: _percentiles(row) for row in times if row["overall"] == 0}
    stats = [{"template_id": row["template_id"], "step": row["step"], "name": row["name"] or "",
              "executions": row["executions"],
              "avg_seconds": float(row["avg_seconds"]) if row["avg_seconds"] is not None else None}
             for row in steps]
    busiest = sorted(stats, key=lambda s: (-s["executions"], s["template_id"], s["step"]))[:10]
    slowest = sorted((s for s in stats if s["avg_seconds"] is not None),
                     key=lambda s: (-s["avg_seconds"], s["template_id"], s["step"]))[:10]
    return json_response({
        "counts_by_status": dict(by_status),
        "completion_time_seconds": _percentiles(overall),
        "approval_latency_seconds": _percentiles(latency),
        "busiest_steps": busiest,
        "slowest_steps": slowest,
        "per_template": [{"template_id": t, "counts_by_status": dict(c),
                          "completion_time_seconds": by_template.get(t, {"count": 0, "p50": None, "p90": None,
                                                                         "p99": None})}
                         for t, c in sorted(per_template.items())],
    })


HANDLERS = {"health": health, "metrics": metrics, "openapi": openapi_document, "docs": docs,
            "getAnalytics": analytics}
