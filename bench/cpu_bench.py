"""CPU milliseconds per workflow, per process of a running stack (issue 15), and A/B of one process.

    source your ports; deploy/stack up --profile test
    .venv/bin/python -m bench.cpu_bench --workload short --workflows 300 --in-flight 16 [--rounds 2]
    .venv/bin/python -m bench.cpu_bench --workload procurement --swap projector=/tmp/base --rounds 4

Each round drives `bench/hops.py`'s closed loop (the peers instrument's templates) and reads the CPU
(user + system, children included: PostgreSQL's backends, the broker's JVM threads) of every process in
the stack's pid files just before the first transfer and just after the last workflow ended, so the
figure is work per workflow, not per second: it does not depend on how fast this shared machine happened
to be in that minute, which latencies do (2-5x with the others' load).

`--swap NAME[,NAME...]=DIR` is the controlled A/B: before each round the process NAME is restarted alternately from
this checkout (A) and from DIR (B, e.g. `git archive main | tar -x -C /tmp/base`), with the same
environment and the same interpreter, so every other process, the broker and PostgreSQL are the same in
both; rounds alternate A, B, A, B so that a drift of the machine's load shows up as a drift, not as a
difference. Only NAME's own CPU (and PostgreSQL's, for database work) should be compared. Several names
(`handler-action,payment-simulator=DIR`) swap those processes together. `--rate N --duration S` drives
hops.py's open loop instead (N workflows a second, whatever the stack does); `--hops` also prints each
round's hop latencies (hops.py's table).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import time
from pathlib import Path

import psutil

from bench.hops import Driver, report
from bench.idle_bench import REPO, stack_pids, tree_cpu


def restart(state_dir: Path, name: str, cwd: Path) -> int:
    """Restart stack process `name` from the checkout `cwd`, same argv and environment; its new pid."""
    from deploy.stackctl.supervise import terminate, write_pid_file

    pid_file = state_dir / "run" / f"{name}.pid"
    data = json.loads(pid_file.read_text())
    proc = psutil.Process(int(data["pid"]))
    env = proc.environ()
    argv = data.get("argv") or proc.cmdline()
    terminate(proc)
    with (state_dir / "logs" / f"{name}.log").open("ab") as log:
        log.write(f"\n--- bench.cpu_bench: restarted from {cwd}\n".encode())
        popen = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd,
                                 env=env, start_new_session=True, close_fds=True)
    write_pid_file(pid_file, popen.pid, argv=argv)
    return popen.pid


async def one_round(workload: str, workflows: int, in_flight: int, pids: dict[str, int], rate: float = 0.0,
                    hops: bool = False) -> dict:
    port = os.environ.get("FLOWLINE_KAFKA_PORT", "29092")
    bootstrap = os.environ.get("FLOWLINE_KAFKA_BOOTSTRAP", f"127.0.0.1:{port}")
    api = f"http://127.0.0.1:{os.environ.get('FLOWLINE_GATEWAY_PORT', '28700')}"
    driver = Driver(bootstrap, api, workload)
    cpu: dict[str, dict[str, float]] = {}
    driver.before_load = lambda: cpu.__setitem__("before", {n: tree_cpu(p) for n, p in pids.items()})
    driver.after_load = lambda: cpu.__setitem__("after", {n: tree_cpu(p) for n, p in pids.items()})
    out = await driver.run(workflows, in_flight, rate=rate)
    if hops:
        report(driver, out)
    ms = {n: (cpu["after"][n] - cpu["before"][n]) * 1000 / workflows for n in pids}
    return {"rate": out["rate"], "ms_per_workflow": ms, "load": os.getloadavg()[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workload", choices=("short", "procurement"), default="short")
    ap.add_argument("--workflows", type=int, default=300)
    ap.add_argument("--in-flight", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--swap", help="NAME[,NAME...]=DIR: alternate these processes between this checkout and DIR")
    ap.add_argument("--rate", type=float, default=0.0, help="open loop: this many workflows a second")
    ap.add_argument("--duration", type=float, default=20.0, help="open loop: for this many seconds")
    ap.add_argument("--hops", action="store_true", help="print each round's hop latencies too")
    ap.add_argument("--settle", type=float, default=8.0, help="seconds after a restart (group join)")
    ap.add_argument("--json", help="also write the rounds to this file")
    args = ap.parse_args()
    state_dir = Path(os.environ.get("FLOWLINE_STATE_DIR") or REPO / ".flowline" / "test").resolve()
    swap_name, swap_dir = (args.swap.split("=", 1) if args.swap else (None, None))
    if args.rate:
        args.workflows = int(args.rate * args.duration)
    rounds = []
    for i in range(args.rounds):
        side = "A"
        if swap_name:
            side = "A" if i % 2 == 0 else "B"
            for name in swap_name.split(","):
                restart(state_dir, name, REPO if side == "A" else Path(swap_dir).resolve())
            time.sleep(args.settle)
        pids = stack_pids(state_dir)
        r = asyncio.run(one_round(args.workload, args.workflows, args.in_flight, pids, args.rate, args.hops))
        r["side"] = side
        rounds.append(r)
        total = sum(r["ms_per_workflow"].values())
        print(f"round {i + 1} ({side}) {args.workload}: {r['rate']:.1f} wf/s, load {r['load']:.1f}, "
              f"{total:.1f} CPU ms per workflow, {1000 / total:.0f} wf per CPU-s")
        for name, v in sorted(r["ms_per_workflow"].items(), key=lambda kv: -kv[1]):
            print(f"    {name:22s} {v:7.2f} ms")
    if swap_name:  # the original code back in place
        for name in swap_name.split(","):
            restart(state_dir, name, REPO)
    if args.json:
        Path(args.json).write_text(json.dumps(rounds, indent=2))


if __name__ == "__main__":
    main()
