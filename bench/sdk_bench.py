"""What the SDK adds on top of a plain aiohttp request: the same GET /v1/workflows/instances/{id}, one
at a time, through a bare `aiohttp.ClientSession` (the baseline), `AsyncClient`, and the blocking `Client`,
in interleaved rounds against a running gateway. Plus one `flowline instances show` subprocess (the
CLI's start-up, which dominates a shell command).

    deploy/stack up
    .venv/bin/python bench/sdk_bench.py [--url http://127.0.0.1:8700] [--requests 300] [--rounds 3]

Prints p50/p99 wall time per request and this process's CPU per request for each path.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import aiohttp

from flowline.client import AsyncClient, Client

VIEWER = "fl_dev_vera_viewer"
REQUESTER = "fl_dev_rita_requester"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


async def bare(url: str, instance_id: str, n: int) -> tuple[list[float], float]:
    async with aiohttp.ClientSession() as session:
        headers = {"Authorization": f"Bearer {VIEWER}"}
        times, cpu = [], time.process_time()
        for _ in range(n):
            start = time.perf_counter()
            async with session.get(f"{url}/v1/workflows/instances/{instance_id}", headers=headers) as response:
                await response.json()
            times.append(time.perf_counter() - start)
        return times, time.process_time() - cpu


async def sdk(url: str, instance_id: str, n: int) -> tuple[list[float], float]:
    async with AsyncClient(url, VIEWER) as client:
        times, cpu = [], time.process_time()
        for _ in range(n):
            start = time.perf_counter()
            await client.get_instance(instance_id)
            times.append(time.perf_counter() - start)
        return times, time.process_time() - cpu


def blocking(url: str, instance_id: str, n: int) -> tuple[list[float], float]:
    with Client(url, VIEWER) as client:
        times, cpu = [], time.process_time()
        for _ in range(n):
            start = time.perf_counter()
            client.get_instance(instance_id)
            times.append(time.perf_counter() - start)
        return times, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default=os.environ.get("FLOWLINE_URL", "http://127.0.0.1:8700"))
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    with Client(args.url, REQUESTER) as client:
        started = client.start_instance("wf_procurement_approval", {"id": f"bench_{time.time_ns()}", "amount": 500},
                                        wait=True)
        instance_id = started.instance_id if hasattr(started, "instance_id") else started.id
    results: dict[str, list[tuple[list[float], float]]] = {"aiohttp (baseline)": [], "AsyncClient": [], "Client": []}
    for _ in range(args.rounds):
        results["aiohttp (baseline)"].append(asyncio.run(bare(args.url, instance_id, args.requests)))
        results["AsyncClient"].append(asyncio.run(sdk(args.url, instance_id, args.requests)))
        with ThreadPoolExecutor(1) as pool:  # the blocking client in a thread of its own, as a script would
            results["Client"].append(pool.submit(blocking, args.url, instance_id, args.requests).result())
    print(f"GET /v1/workflows/instances/{{id}}, {args.requests} sequential requests x {args.rounds} rounds "
          "(median of the rounds)")
    print(f"{'path':<20} {'p50 ms':>8} {'p99 ms':>8} {'client CPU ms/request':>22}")
    for name, runs in results.items():
        p50 = statistics.median(percentile(t, 50) for t, _ in runs) * 1000
        p99 = statistics.median(percentile(t, 99) for t, _ in runs) * 1000
        cpu = statistics.median(c / args.requests for _, c in runs) * 1000
        print(f"{name:<20} {p50:>8.2f} {p99:>8.2f} {cpu:>22.3f}")

    env = {**os.environ, "FLOWLINE_URL": args.url, "FLOWLINE_TOKEN": VIEWER}
    walls = []
    for _ in range(5):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "deploy.cli", "instances", "show", instance_id, "--json"], env=env,
                       check=True, capture_output=True)
        walls.append(time.perf_counter() - start)
    print(f"flowline instances show (subprocess, 5 runs): median {statistics.median(walls) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
