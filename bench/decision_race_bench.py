"""Decisions sent the moment `ApprovalRequested` is on `workflow.events` (issue 9.7): how many get 404, and
how long the gateway takes to accept them, with the bounded wait for the projector and without it.

    deploy/stack up --profile test --no-processes
    .venv/bin/python -m bench.decision_race_bench [--instances 60] [--concurrency 10]

One process runs an engine, the projector and the gateway (the API tests' `ApiWorld`) on fresh topics of
the running stack (FLOWLINE_KAFKA_BOOTSTRAP, DATABASE_URL; test-profile defaults). Each instance is started
with a manual trigger; a consumer of `workflow.events` (read_committed) sees its `ApprovalRequested` and
the CFO approves at once, without `?wait`. Mode `wait` is the gateway as configured
(FLOWLINE_INSTANCE_WAIT_SECONDS, 5); mode `no-wait` sets it to 0, which is the gateway before the fix.

Measured on the shared 2-core machine (2026-11-30, 60 instances, concurrency 10): no-wait 59 of 60
approvals answered 404; wait 0 of 60, accepted in p50 152-220 ms, p99 419-678 ms (two runs).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import statistics
import time

from core import events as ev
from tests.integration.gateway.test_api import manual_procurement
from tests.integration.gateway.world import running_world

I = "/v1/workflows/instances"  # noqa: E741


async def one(world, tenant, template_id: str) -> tuple[int, float]:
    _, started = await world.call("POST", I, tenant, "requester", expect=202,
                                  json={"template_id": template_id, "trigger_data": {"amount": 5000}})
    iid = started["instance_id"]
    await world.engine.wait_for_event(iid, ev.ApprovalRequested, step=2, timeout=60)
    began = time.perf_counter()
    status, _ = await world.call("POST", f"{I}/{iid}/steps/2/approve", tenant, "cfo", json={"reasoning": "race"})
    return status, time.perf_counter() - began


async def run(instances: int, concurrency: int) -> None:
    kafka_port = os.environ.get("FLOWLINE_KAFKA_PORT", "29092")
    bootstrap = os.environ.get("FLOWLINE_KAFKA_BOOTSTRAP", f"127.0.0.1:{kafka_port}")
    database_url = os.environ.get(
        "DATABASE_URL", f"postgresql://postgres@127.0.0.1:{os.environ.get('FLOWLINE_PG_PORT', '25432')}/flowline")
    async with running_world(bootstrap, database_url) as world:
        configured = world.gateway.settings.instance_wait_seconds
        for mode, wait in (("no-wait", 0.0), ("wait", max(configured, 5.0))):
            world.gateway.settings = dataclasses.replace(world.gateway.settings, instance_wait_seconds=wait)
            tenant = await world.new_tenant()
            _, template = await world.call("POST", "/v1/workflows/templates", tenant, json=manual_procurement(),
                                           expect=201)
            gate = asyncio.Semaphore(concurrency)

            async def bounded(gate=gate, tenant=tenant, template_id=template["id"]):
                async with gate:
                    return await one(world, tenant, template_id)

            results = await asyncio.gather(*(bounded() for _ in range(instances)))
            statuses = [s for s, _ in results]
            accepted = sorted(t * 1000 for s, t in results if s == 202)
            p50 = statistics.median(accepted) if accepted else float("nan")
            p99 = accepted[min(len(accepted) - 1, int(len(accepted) * 0.99))] if accepted else float("nan")
            print(f"{mode:8s} instance_wait={wait:g}s: {instances} approvals right after ApprovalRequested -> "
                  f"{statuses.count(202)} accepted, {statuses.count(404)} x 404, "
                  f"{len(statuses) - statuses.count(202) - statuses.count(404)} other; "
                  f"accepted in p50 {p50:.0f} ms, p99 {p99:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=60)
    parser.add_argument("--concurrency", type=int, default=10)
    args = parser.parse_args()
    asyncio.run(run(args.instances, args.concurrency))


if __name__ == "__main__":
    main()
