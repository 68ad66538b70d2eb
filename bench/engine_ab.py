"""A/B of the engine process on one running stack: hop latencies, CPU per workflow and per transaction.

    source your ports; export FLOWLINE_PARTITIONS=1 FLOWLINE_STATE_DIR=$PWD/.flowline/bench2
    deploy/stack up --profile test;  git archive main | tar -x -C /tmp/base
    .venv/bin/python -m bench.engine_ab --base /tmp/base --rounds 2 -- --workload short --in-flight 16

Before each round the engine is restarted alternately from this checkout (A) and from `--base` (B), with
`bench/cpu_bench.py`'s `restart` (same argv, environment and interpreter), so the broker, PostgreSQL and every
other process are the same in both; then `bench/hops.py` runs with the arguments after `--`. The engine's
committed processor transactions (`flowline_engine_batch_seconds_count`, from its health port) are read
before and after, so its CPU per transaction is printed beside hops.py's CPU per workflow.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from bench.cpu_bench import restart
from bench.idle_bench import REPO, stack_pids, tree_cpu


def transactions(port: int) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    found = re.search(r'^flowline_engine_batch_seconds_count\{role="processor"\} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="the checkout B's engine runs from")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--settle", type=float, default=10.0, help="seconds after a restart (group join, restore)")
    ap.add_argument("hops", nargs=argparse.REMAINDER, help="arguments for bench/hops.py (after --)")
    args = ap.parse_args()
    hops = [a for a in args.hops if a != "--"]
    state_dir = Path(os.environ.get("FLOWLINE_STATE_DIR") or REPO / ".flowline" / "test").resolve()
    health = int(os.environ.get("FLOWLINE_GATEWAY_PORT", "28700")) + 1
    for n in range(args.rounds * 2):
        side = "A" if n % 2 == 0 else "B"
        restart(state_dir, "engine", REPO if side == "A" else Path(args.base).resolve())
        time.sleep(args.settle)
        engine = stack_pids(state_dir)["engine"]
        txn0, cpu0 = transactions(health), tree_cpu(engine)
        out = subprocess.run([sys.executable, "-m", "bench.hops", *hops], capture_output=True, text=True,
                             cwd=REPO, check=False)
        txn, cpu = transactions(health) - txn0, tree_cpu(engine) - cpu0
        print(f"=== round {n + 1}: {side} ({'this checkout' if side == 'A' else args.base}), load average "
              f"{os.getloadavg()[0]:.2f}")
        print(out.stdout + out.stderr[-2000:])
        print(f"engine: {txn:.0f} processor transactions, {cpu * 1000 / max(txn, 1):.2f} ms CPU per transaction "
              f"(whole run incl. the driver's warm-up)\n", flush=True)
    restart(state_dir, "engine", REPO)


if __name__ == "__main__":
    main()
