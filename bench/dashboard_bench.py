"""The dashboard's reads with 100,000 instances in the read model (issue 12): p50/p95 at the gateway of the
Active list, an instance page and Analytics, and the time until the Active list is usable in headless
Chromium after navigation. Bounded: a fixed number of sequential requests on loopback, then the rows it
inserted are deleted.

    deploy/stack up --profile test --no-processes      # Kafka + PostgreSQL (your exported ports)
    .venv/bin/python bench/dashboard_bench.py [--instances 100000] [--requests 200]

It writes a synthetic tenant straight into the read model (what the projector would have written: instances
in every status, two step executions each, approvals among them) with one INSERT ... SELECT
generate_series per table, starts a gateway in this process on an ephemeral loopback port, and measures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import time
import uuid

import asyncpg
from aiohttp import ClientSession, web

from deploy.stackctl import Profile
from gateway.app import build_app, start_gateway, stop_gateway
from gateway.auth import hash_token, new_token
from gateway.settings import GatewaySettings

STATUSES = "ARRAY['ACTIVE','COMPLETED','COMPLETED','COMPLETED','FAILED','CANCELLED','PAUSED']"


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


async def seed(conn: asyncpg.Connection, tenant: str, count: int) -> str:
    token = new_token()
    await conn.execute("INSERT INTO principals (id, tenant_id, kind, display_name, roles) VALUES ($1, $2, 'human', "
                       "'bench operator', $3)", f"{tenant}_op", tenant, ["operator"])
    await conn.execute("INSERT INTO api_tokens (token_hash, principal_id, name) VALUES ($1, $2, 'bench')",
                       hash_token(token), f"{tenant}_op")
    document = json.dumps({"name": "Bench", "trigger_type": "manual", "steps": [
        {"type": "condition", "name": "Check", "config": {"expression": "true"}},
        {"type": "approval", "name": "Approve", "config": {"approvers": {"type": "role", "value": "cfo"}}}]})
    await conn.execute(f"""INSERT INTO workflow_templates (id, tenant_id, name, description, trigger_type, status,
                               current_version, created_by)
                           SELECT 'wft_{tenant}_' || g, $1, 'Bench template ' || g, '', 'MANUAL', 'ACTIVE', 1, 'bench'
                           FROM generate_series(0, 4) g""", tenant)
    await conn.execute(f"""INSERT INTO workflow_template_versions (template_id, version, document, created_by)
                           SELECT 'wft_{tenant}_' || g, 1, $1::jsonb, 'bench' FROM generate_series(0, 4) g""",
                       document)
    # Bulk rows with the row triggers off (superuser: the test stack's), then the rollups set-wise, as the
    # migration's backfill computes them (store/migrations/0011): a trigger per bulk row would update the same
    # counters 100,000 times in one transaction.
    await conn.execute("SET session_replication_role = replica")
    await conn.execute(f"""
        INSERT INTO workflow_instances (id, tenant_id, template_id, template_version, template_name, status,
            current_step, current_step_name, step_count, trigger, source, blocking, amount, last_seq,
            created_at, updated_at, completed_at)
        SELECT '{tenant}_i' || g, $1, 'wft_{tenant}_' || (g % 5), 1, 'Bench template ' || (g % 5),
               ({STATUSES})[1 + g % 7], 2, 'Approve', 3,
               jsonb_build_object('id', 'tr_' || g, 'amount', g % 5000, 'currency', 'USD'), 'event:bench',
               jsonb_build_object('status', 'ACTIVE', 'waiting_for', 'approval', 'step', 2),
               g % 5000, 6, now() - (g || ' seconds')::interval, now() - (g || ' seconds')::interval,
               CASE WHEN g % 7 IN (1, 2, 3) THEN now() - (g || ' seconds')::interval + interval '90 seconds' END
        FROM generate_series(1, $2) g""", tenant, count)
    await conn.execute(f"""
        INSERT INTO workflow_step_executions (instance_id, step, attempt, name, type, status, started_at, ended_at,
                                              approved_by)
        SELECT '{tenant}_i' || g, s, 1, CASE s WHEN 1 THEN 'Check' ELSE 'Approve' END,
               CASE s WHEN 1 THEN 'condition' ELSE 'approval' END,
               CASE s WHEN 1 THEN 'COMPLETED' ELSE 'APPROVED' END,
               now() - (g || ' seconds')::interval,
               now() - (g || ' seconds')::interval + (s * 30 || ' seconds')::interval,
               CASE s WHEN 2 THEN ARRAY['approver_' || (g % 20)] ELSE '{{}}'::text[] END
        FROM generate_series(1, $1) g, generate_series(1, 2) s""", count)
    await conn.execute(f"""
        INSERT INTO workflow_transitions (instance_id, seq, tenant_id, event_type, step, at)
        SELECT '{tenant}_i' || g, q, $1, (ARRAY['InstanceStarted','StepStarted','StepSucceeded','StepStarted',
               'DecisionRecorded','StepApproved'])[q], CASE WHEN q > 1 THEN 1 + q / 4 END, now()
        FROM generate_series(1, $2) g, generate_series(1, 6) q""", tenant, count)
    await conn.execute("SET session_replication_role = DEFAULT")
    await conn.execute("SELECT analytics_backfill($1)", tenant)
    await conn.execute("ANALYZE workflow_instances; ANALYZE workflow_step_executions; ANALYZE workflow_transitions; "
                       "ANALYZE analytics_completions; ANALYZE analytics_approval_steps; "
                       "ANALYZE analytics_approver_decisions")
    return token


async def cleanup(conn: asyncpg.Connection, tenant: str) -> None:
    like = f"{tenant}_i%"
    await conn.execute("SET session_replication_role = replica")  # the rollups go below, by tenant
    for table in ("analytics_instance_counts", "analytics_finished_hourly", "analytics_step_hourly",
                  "analytics_completions", "analytics_approval_steps", "analytics_approver_decisions"):
        await conn.execute(f"DELETE FROM {table} WHERE tenant_id = $1", tenant)
    await conn.execute("DELETE FROM workflow_transitions WHERE instance_id LIKE $1", like)
    await conn.execute("DELETE FROM workflow_step_executions WHERE instance_id LIKE $1", like)
    await conn.execute("DELETE FROM workflow_instances WHERE tenant_id = $1", tenant)
    await conn.execute("DELETE FROM workflow_template_versions WHERE template_id LIKE $1", f"wft_{tenant}_%")
    await conn.execute("DELETE FROM workflow_templates WHERE tenant_id = $1", tenant)
    await conn.execute("DELETE FROM api_tokens WHERE principal_id = $1", f"{tenant}_op")
    await conn.execute("DELETE FROM principals WHERE tenant_id = $1", tenant)
    await conn.execute("SET session_replication_role = DEFAULT")


async def measure(base: str, token: str, paths: dict[str, str], requests: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    headers = {"Authorization": f"Bearer {token}"}
    async with ClientSession(headers=headers) as session:
        for name, path in paths.items():
            times = []
            for i in range(requests + 5):
                started = time.perf_counter()
                async with session.get(base + path.format(n=1 + (i * 7919) % 100_000)) as response:
                    await response.read()
                    assert response.status == 200, (path, response.status)
                if i >= 5:  # warm-up
                    times.append((time.perf_counter() - started) * 1000)
            out[name] = times
    return out


async def browser_usable(base: str, token: str, runs: int) -> list[float]:
    from playwright.async_api import async_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        return []
    times = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        context = await browser.new_context(viewport={"width": 1280, "height": 800})
        await context.add_init_script(f"sessionStorage.setItem('flowline.token', '{token}')")
        page = await context.new_page()
        for _ in range(runs):
            started = time.perf_counter()
            await page.goto(f"{base}/instances")
            await page.get_by_test_id("instance-row").first.wait_for()
            times.append((time.perf_counter() - started) * 1000)
        await browser.close()
    return times


async def main(count: int, requests: int) -> None:
    profile = Profile.load("test")
    tenant = f"bench_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(profile.database_url)
    started = time.perf_counter()
    token = await seed(conn, tenant, count)
    print(f"seeded {count:,} instances for {tenant} in {time.perf_counter() - started:.1f} s")
    gateway = await start_gateway(GatewaySettings(bootstrap_servers=profile.kafka_bootstrap,
                                                  database_url=profile.database_url))
    runner = web.AppRunner(build_app(gateway), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    try:
        results = await measure(base, token, {
            "Active list (limit 50)": "/v1/workflows/instances?limit=50",
            "Active list, status ACTIVE (limit 200)": "/v1/workflows/instances?status=ACTIVE&limit=200",
            "Approvals (pending)": "/v1/workflows/pending?limit=200",
            "instance page": f"/v1/workflows/instances/{tenant}_i{{n}}",
            "Analytics (all templates)": "/v1/workflows/analytics",
            f"Analytics (template wft_{tenant}_1)": f"/v1/workflows/analytics?template_id=wft_{tenant}_1",
            "Throughput, 30 days + approvers": "/v1/workflows/analytics/throughput",
            "Throughput, 48 hours": "/v1/workflows/analytics/throughput?bucket=hour&periods=48",
            "Pipeline of one template": f"/v1/workflows/templates/wft_{tenant}_1/pipeline",
        }, requests)
        print(f"\n{'read':42} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}  (n={requests} each, sequential)")
        for name, times in results.items():
            print(f"{name:42} {statistics.median(times):8.1f} {pct(times, 95):8.1f} {max(times):8.1f}")
        usable = await browser_usable(base, token, 10)
        if usable:
            print(f"\nActive list usable in Chromium after navigation: p50 {statistics.median(usable):.0f} ms, "
                  f"max {max(usable):.0f} ms (n={len(usable)})")
        else:
            print("\nchromium not found: browser timing skipped")
    finally:
        await runner.cleanup()
        await stop_gateway(gateway)
        await cleanup(conn, tenant)
        await conn.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(main(args.instances, args.requests))
