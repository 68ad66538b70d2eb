"""Reads for the dashboard's Pipelines and Analytics tabs (story 29.11, PRD-127 tab 3) that the older
`getAnalytics` (gateway/operations.py) does not answer: throughput over time, busiest approvers, and one
template's pipeline (each step's executions by status across instances, and the failed or timed-out ones
with their error, so they can be retried from the page). All from the read model, scoped to the caller's
tenant; another tenant's template answers 404 like every other template read.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from gateway.auth import READ
from gateway.calls import Call, json_response
from gateway.templates import load_template

BUCKETS = {"hour": timedelta(hours=1), "day": timedelta(days=1)}
FAILED_STEPS = ("FAILED", "TIMED_OUT")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _period(call: Call) -> tuple[str, datetime]:
    bucket, periods = call.query("bucket"), call.query("periods")  # validated by the OpenAPI document
    now = datetime.now(UTC)
    start = now - BUCKETS[bucket] * (periods - 1)
    floor = start.replace(minute=0, second=0, microsecond=0)
    return bucket, floor.replace(hour=0) if bucket == "day" else floor


async def throughput(call: Call) -> web.Response:
    """Instances started, completed and failed per hour or day, and the busiest approvers, in a period."""
    me = call.me
    me.require(READ, "read analytics")
    bucket, since = _period(call)
    args: list[Any] = [me.tenant_id, since]
    template = of_d = ""
    if call.query("template_id"):
        args.append(call.query("template_id"))
        template, of_d = f" AND template_id = ${len(args)}", f" AND d.template_id = ${len(args)}"
    pool = call.gateway.pool
    # From the rollups the database keeps as the read model is written (store/migrations/0011, ADR 12):
    # `since` is a whole UTC hour, so the hourly counters (by creation hour for started, by end hour for
    # completed and failed) sum to exactly the instances in each bucket. The approvers: the ten with the
    # most decisions, then each one's exact median from its own index range. Both reads run at once.
    rows, approvers = await asyncio.gather(pool.fetch(
        f"""SELECT date_trunc('{bucket}', t.hour) AS bucket, t.kind, sum(t.n)::bigint AS n FROM (
              SELECT hour, 'started' AS kind, n FROM analytics_instance_counts
               WHERE tenant_id = $1 AND hour >= $2{template} AND n > 0
              UNION ALL
              SELECT hour, lower(status), n FROM analytics_finished_hourly
               WHERE tenant_id = $1 AND hour >= $2{template} AND n > 0
            ) t GROUP BY 1, 2 HAVING sum(t.n) > 0 ORDER BY 1""", *args), pool.fetch(
        f"""WITH top AS (
              SELECT approver, count(*) AS decisions FROM analytics_approver_decisions
               WHERE tenant_id = $1 AND created_at >= $2{template} GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 10)
            SELECT top.approver, top.decisions,
                   (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY d.seconds) FROM analytics_approver_decisions d
                     WHERE d.tenant_id = $1 AND d.approver = top.approver AND d.created_at >= $2{of_d})
                     AS p50_seconds
            FROM top ORDER BY 2 DESC, 1""", *args))
    series: dict[datetime, dict[str, int]] = {}
    for r in rows:
        series.setdefault(r["bucket"], {"started": 0, "completed": 0, "failed": 0})[r["kind"]] = r["n"]
    return json_response({
        "bucket": bucket, "since": _iso(since),
        "series": [{"at": _iso(at), **counts} for at, counts in sorted(series.items())],
        "busiest_approvers": [{"approver": r["approver"], "decisions": r["decisions"],
                               "p50_seconds": float(r["p50_seconds"]) if r["p50_seconds"] is not None else None}
                              for r in approvers],
    })


async def pipeline(call: Call) -> web.Response:
    """Each step of one template: executions by status across its instances, and the latest failures."""
    me = call.me
    me.require(READ, "read templates")
    pool = call.gateway.pool
    template = await load_template(pool, call.param("id"), me.tenant_id)
    steps = await pool.fetch(
        """SELECT s.step, max(s.name) AS name, max(s.type) AS type, s.status, count(*) AS n,
                  avg(extract(epoch FROM s.ended_at - s.started_at)) FILTER (WHERE s.ended_at IS NOT NULL)
                    AS avg_seconds
           FROM workflow_instances i JOIN workflow_step_executions s ON s.instance_id = i.id
           WHERE i.tenant_id = $1 AND i.template_id = $2 GROUP BY s.step, s.status ORDER BY s.step""",
        me.tenant_id, template["id"])
    by_step: dict[int, dict[str, Any]] = {}
    for r in steps:
        entry = by_step.setdefault(r["step"], {"step": r["step"], "name": r["name"] or "", "type": r["type"] or "",
                                                "counts": {}, "executions": 0, "avg_seconds": None})
        entry["counts"][r["status"]] = r["n"]
        entry["executions"] += r["n"]
        if r["avg_seconds"] is not None:
            entry["avg_seconds"] = max(entry["avg_seconds"] or 0.0, float(r["avg_seconds"]))
    failures = await pool.fetch(
        """SELECT i.id, i.status AS instance_status, i.current_step, s.step, s.attempt, s.name, s.status, s.error,
                  s.ended_at
           FROM workflow_instances i JOIN workflow_step_executions s ON s.instance_id = i.id
           WHERE i.tenant_id = $1 AND i.template_id = $2 AND s.status = ANY($3::text[])
           ORDER BY s.ended_at DESC NULLS LAST LIMIT 50""", me.tenant_id, template["id"], list(FAILED_STEPS))
    return json_response({
        "template_id": template["id"], "name": template["name"],
        "steps": [by_step[n] for n in sorted(by_step)],
        "failures": [{"instance_id": r["id"], "instance_status": r["instance_status"], "step": r["step"],
                      "attempt": r["attempt"], "name": r["name"], "status": r["status"], "error": r["error"],
                      "ended_at": _iso(r["ended_at"]),
                      "retryable": r["instance_status"] == "FAILED" and r["current_step"] == r["step"]}
                     for r in failures],
    })


HANDLERS = {"getThroughput": throughput, "getPipeline": pipeline}
