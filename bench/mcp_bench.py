"""What `flowline mcp` adds on top of the REST call it makes: the same instance read, one at a time, through
`AsyncClient` (the baseline: one REST GET), the MCP tool `flowline_get_instance` over streamable HTTP (the
stack's `mcp` process) and over stdio (a `flowline mcp` subprocess), in interleaved rounds against a running
stack. The MCP paths include the model-facing wording and a fresh gateway connection per call.

    deploy/stack up
    .venv/bin/python bench/mcp_bench.py [--url http://127.0.0.1:8700] [--mcp http://127.0.0.1:8702/mcp]
                                       [--requests 100] [--rounds 3]

Prints p50/p99 wall time per call for each path.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

import httpx2
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from flowline.client import AsyncClient

AGENT = "fl_dev_agent_456"
REQUESTER = "fl_dev_rita_requester"
ROOT = Path(__file__).resolve().parents[1]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


async def timed(n: int, call) -> list[float]:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        await call()
        times.append(time.perf_counter() - t0)
    return times


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default=os.environ.get("FLOWLINE_URL", "http://127.0.0.1:8700"))
    parser.add_argument("--mcp", default=None)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    port = int(args.url.rsplit(":", 1)[1].split("/")[0])
    mcp_url = args.mcp or f"http://127.0.0.1:{port + 2}/mcp"
    async with AsyncClient(args.url, REQUESTER) as rita:
        started = await rita.start_instance("wf_procurement_approval", {"amount": 10}, wait=True)
    instance_id = started.raw.get("id") or started.raw["instance_id"]
    params = StdioServerParameters(command=sys.executable, args=["-m", "deploy.cli", "mcp"], cwd=ROOT,
                                   env={"FLOWLINE_URL": args.url, "FLOWLINE_TOKEN": AGENT})
    results: dict[str, list[float]] = {"REST (AsyncClient)": [], "MCP streamable HTTP": [], "MCP stdio": []}
    with open(os.devnull, "w") as devnull:
        async with AsyncClient(args.url, AGENT) as rest, \
                httpx2.AsyncClient(headers={"Authorization": f"Bearer {AGENT}"}) as http, \
                Client(streamable_http_client(mcp_url, http_client=http)) as over_http, \
                Client(stdio_client(params, errlog=devnull)) as over_stdio:
            async def tool(client: Client) -> None:
                result = await client.call_tool("flowline_get_instance", {"instance_id": instance_id})
                assert not result.is_error, result.content
            for _ in range(args.rounds):
                results["REST (AsyncClient)"] += await timed(args.requests, lambda: rest.get_instance(instance_id))
                results["MCP streamable HTTP"] += await timed(args.requests, lambda: tool(over_http))
                results["MCP stdio"] += await timed(args.requests, lambda: tool(over_stdio))
    print(f"{args.rounds} rounds x {args.requests} calls, instance {instance_id}")
    for name, times in results.items():
        print(f"  {name:<22} p50 {percentile(times, 50) * 1000:6.1f} ms   p99 {percentile(times, 99) * 1000:6.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
