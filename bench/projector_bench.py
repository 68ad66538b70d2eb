"""CPU per workflow of the projector and of PostgreSQL for small batches, without Kafka (issue 15).

    source your ports; deploy/stack up --profile test
    .venv/bin/python -m bench.projector_bench [--workflows 300] [--per-batch 2] [--rounds 4] [--base /tmp/base]

At 16 workflows in flight a projector batch holds the events of one or two workflows, so what a batch costs
per round trip, not per row, is the projector's CPU and much of PostgreSQL's. This applies `procurement`
workflows (tests/unit/harness.py: start, CFO approval, manager approval: three batches per workflow, as the
engine writes them) with `Projector.apply_events`, `--per-batch` workflows per batch, and reads the CPU of
this process and of the PostgreSQL backends serving it (user + system) around it. `--base DIR` runs every other round
from another checkout (A/B in one window: `git archive main | tar -x -C DIR`), in a subprocess with the same
interpreter, so the rounds alternate A, B, A, B and a drift of the shared machine's load shows as a drift.
It also prints each round's wall time per batch (`apply_events`, the commit's wait included).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path


async def one_round(workflows: int, per_batch: int) -> dict:
    import psutil
    from aiokafka import TopicPartition

    from store.projector import Projector, open_pool
    from tests.unit.harness import Harness, human

    url = os.environ.get("DATABASE_URL") or f"postgresql://postgres@127.0.0.1:{os.environ['FLOWLINE_PG_PORT']}/flowline"
    projector = Projector(bootstrap_servers="unused:9092", database_url=url, group_id=f"bench-{uuid.uuid4().hex[:8]}")
    projector.pool = await open_pool(url)
    tp = TopicPartition(f"bench.projector.{uuid.uuid4().hex[:8]}", 0)
    cfo, manager = human("cfo_1", "cfo"), human("fm_1", "finance_manager")
    batches = []
    for n in range(0, workflows, per_batch):
        group = [Harness("procurement_approval", instance_id=f"wfi_bench_{uuid.uuid4().hex[:12]}")
                 for _ in range(min(per_batch, workflows - n))]
        phases = []
        for h in group:
            h.start({"amount": 50_000, "currency": "USD"})
        phases.append([e for h in group for e in h.events])
        for step, actor in ((2, cfo), (3, manager)):
            seen = {h.instance_id: len(h.events) for h in group}
            for h in group:
                h.approve(step, actor)
            phases.append([e for h in group for e in h.events[seen[h.instance_id]:]])
        batches.extend(phases)
    await projector.apply_events(batches[0], {tp: 1})  # type introspection, template lookups: not counted
    offset = 1

    def backends() -> dict[int, float]:
        """CPU seconds of the PostgreSQL backends serving the projector's connections (only those: the
        server's other processes come and go, and a child that exits takes its CPU with it)."""
        out = {}
        for holder in projector.pool._holders:  # pinned asyncpg (constraints.txt)
            if holder._con is not None:
                t = psutil.Process(holder._con.get_server_pid()).cpu_times()
                out[holder._con.get_server_pid()] = t.user + t.system
        return out

    before = (time.process_time(), backends())
    walls = []
    for events in batches[1:]:
        offset += len(events)
        began = time.perf_counter()
        await projector.apply_events(events, {tp: offset})
        walls.append((time.perf_counter() - began) * 1000)
    after = (time.process_time(), backends())
    walls.sort()
    await projector.pool.close()
    postgres = sum(cpu - before[1].get(pid, 0.0) for pid, cpu in after[1].items())
    return {"projector_ms": (after[0] - before[0]) * 1000 / workflows,
            "postgres_ms": postgres * 1000 / workflows, "batches": len(batches) - 1,
            "load": os.getloadavg()[0], "batch_ms_p50": walls[len(walls) // 2],
            "batch_ms_p90": walls[int(len(walls) * 0.9)]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workflows", type=int, default=300)
    ap.add_argument("--per-batch", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--base", help="another checkout: every other round runs its projector")
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # a round in this process, as JSON
    args = ap.parse_args()
    if args.one:  # run by path from the checkout to measure (its modules first)
        sys.path.insert(0, os.getcwd())
        print(json.dumps(asyncio.run(one_round(args.workflows, args.per_batch))))
        return
    here = Path(__file__).resolve().parent.parent
    env = {**os.environ, "FLOWLINE_STATE_DIR": os.environ.get("FLOWLINE_STATE_DIR") or str(here / ".flowline" / "test")}
    for i in range(args.rounds):
        side, cwd = ("B", Path(args.base).resolve()) if args.base and i % 2 else ("A", here)
        out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--one", "--workflows",
                              str(args.workflows), "--per-batch", str(args.per_batch)], cwd=cwd, env=env,
                              check=False, capture_output=True, text=True)
        if out.returncode:
            raise SystemExit(out.stderr)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"round {i + 1} ({side}): projector {r['projector_ms']:.2f} ms, PostgreSQL {r['postgres_ms']:.2f} ms "
              f"per workflow ({r['batches']} batches, load {r['load']:.1f}; a batch's wall time p50 "
              f"{r['batch_ms_p50']:.2f} ms, p90 {r['batch_ms_p90']:.2f} ms)")


if __name__ == "__main__":
    main()
