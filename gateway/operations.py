"""Health, metrics, the OpenAPI document, its HTML page, and analytics (story 29.11)."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
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


async def analytics(call: Call) -> web.Response:
    me = call.me
    me.require(READ, "read analytics")
    args: list[Any] = [me.tenant_id]
    where = ["i.tenant_id = $1"]
    template_id = call.query("template_id")
    if template_id is not None:
        args.append(template_id)
        where.append(f"i.template_id = ${len(args)}")
    after = call.query("created_after")
    if after is not None:
        args.append(after)
        where.append(f"i.created_at > ${len(args)}")
    cond = " AND ".join(where)
    completion = "extract(epoch FROM i.completed_at - i.created_at)"
    duration = "extract(epoch FROM s.ended_at - s.started_at)"
    pool = call.gateway.pool
    async with pool.acquire() as conn:
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
    return json_response({
        "counts_by_status": dict(by_status),
        "completion_time_seconds": _percentiles(overall),
        "approval_latency_seconds": _percentiles(latency),
        "busiest_steps": busiest,
        "slowest_steps": slowest,
        "per_template": [{"template_id": t, "counts_by_status": dict(c),
                          "completion_time_seconds": times.get(t, {"count": 0, "p50": None, "p90": None, "p99": None})}
                         for t, c in sorted(per_template.items())],
    })


HANDLERS = {"health": health, "metrics": metrics, "openapi": openapi_document, "docs": docs,
            "getAnalytics": analytics}
