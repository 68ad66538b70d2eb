"""A short, bounded load on a running gateway (loopback): GET /instances, GET /instances/{id}, POST approve.

    deploy/stack up                      # dev stack: gateway on :8700, seeded tokens
    .venv/bin/python bench/gateway_bench.py [--url http://127.0.0.1:8700] [--requests 2000] [--concurrency 16]

Setup starts `--instances` procurement instances (amount 500, so they wait at "Manager Approval") with
?wait=true. The load then mixes the three operations evenly and prints p50/p99 latency per endpoint.
Approvals are sent without ?wait (the gateway's own cost: authenticate, read the instance, build and send
the command; 202); the first approval of an instance moves it on, later ones are rejected by the engine,
which the gateway does not wait for.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from collections import defaultdict

import aiohttp

TEMPLATE = "wf_procurement_approval"
ADMIN = "fl_dev_acme_admin"
REQUESTER = "fl_dev_rita_requester"
MANAGER = "fl_dev_bob_manager"
VIEWER = "fl_dev_vera_viewer"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))
    return ordered[index]


async def activate(session: aiohttp.ClientSession, url: str) -> None:
    """The seed leaves the built-ins inactive: put the template's document back (a new, ACTIVE version)."""
    path = f"{url}/v1/workflows/templates/{TEMPLATE}"
    admin = {"Authorization": f"Bearer {ADMIN}"}
    async with session.get(path, headers=admin) as response:
        template = await response.json()
    if template.get("status") != "ACTIVE":
        async with session.put(path, json=template["document"], headers=admin) as response:
            if response.status != 200:
                raise SystemExit(f"activating {TEMPLATE} failed: {response.status} {await response.text()}")


async def setup(session: aiohttp.ClientSession, url: str, count: int) -> list[str]:
    await activate(session, url)
    ids = []
    for i in range(count):
        async with session.post(f"{url}/v1/workflows/instances?wait=true", json={
                "template_id": TEMPLATE, "trigger_data": {"id": f"bench_{time.time_ns()}_{i}", "amount": 500}},
                headers={"Authorization": f"Bearer {REQUESTER}"}) as response:
            body = await response.json()
            if response.status not in (201, 202):
                raise SystemExit(f"setup failed: {response.status} {body}")
            ids.append(body.get("id") or body["instance_id"])
    return ids


async def run(url: str, requests: int, concurrency: int, instances: int) -> dict[str, list[float]]:
    timings: dict[str, list[float]] = defaultdict(list)
    statuses: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        ids = await setup(session, url, instances)
        rng = random.Random(42)
        plan = [("GET /instances", "GET", "/v1/workflows/instances?limit=50", VIEWER, None),
                ("GET /instances/{id}", "GET", "/v1/workflows/instances/{id}", VIEWER, None),
                ("POST approve", "POST", "/v1/workflows/instances/{id}/steps/3/approve", MANAGER,
                 {"reasoning": "bench"})]
        queue: asyncio.Queue = asyncio.Queue()
        for i in range(requests):
            queue.put_nowait((plan[i % len(plan)], rng.choice(ids)))

        async def worker() -> None:
            while True:
                try:
                    (name, method, path, token, body), instance_id = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                started = time.perf_counter()
                async with session.request(method, url + path.replace("{id}", instance_id), json=body,
                                           headers={"Authorization": f"Bearer {token}"}) as response:
                    await response.read()
                timings[name].append((time.perf_counter() - started) * 1000)
                statuses[name][response.status] += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    print(f"{requests} requests, concurrency {concurrency}, {elapsed:.1f} s, {requests / elapsed:.0f} req/s "
          f"({instances} instances)")
    print(f"{'endpoint':<22} {'n':>5} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8}  statuses")
    for name, values in timings.items():
        codes = ", ".join(f"{c}x{n}" for c, n in sorted(statuses[name].items()))
        print(f"{name:<22} {len(values):>5} {percentile(values, 50):>8.1f} {percentile(values, 99):>8.1f} "
              f"{statistics.fmean(values):>8.1f}  {codes}")
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8700")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--instances", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(run(args.url.rstrip("/"), args.requests, args.concurrency, args.instances))


if __name__ == "__main__":
    main()
