"""CPU of an idle stack: every process `deploy/stack up` started, measured with psutil over a quiet window.

Issue 15 asks for an idle stack under 5 % of one core: a stack that spins while nothing happens (consumers
asking the broker every few milliseconds) burns the CPU the payment platform pays for, and shows up as the
"fixed cost" that dominates work per CPU-second at low load. This reads the pid files of a running stack
(its state dir: FLOWLINE_STATE_DIR, else .flowline/<profile>) and sums user+system CPU of each process and
its children over the window, so the broker and PostgreSQL are counted as well as Flowline's own processes.

    deploy/stack up                       # any profile; leave it idle
    .venv/bin/python -m bench.idle_bench  # [--seconds 30] [--profile dev] [--json] [--series 1]

`--series S` prints the same figures for each S-second slice of the window, one row per slice, to see what
a stack does right after it started or right after a load and when it settles (the instrument's idle window
is 5-10 s that begins 2 s after its setup or its warm-up load).
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent


def stack_pids(state_dir: Path) -> dict[str, int]:
    """The stack's live processes by name; a pid file whose process is gone, or whose pid now names another
    process (start time differs, as deploy/stack checks), is left out."""
    pids = {}
    for f in sorted((state_dir / "run").glob("*.pid")):
        try:
            data = json.loads(f.read_text())
            proc = psutil.Process(int(data["pid"]))
            if data.get("create_time") is not None and abs(proc.create_time() - float(data["create_time"])) >= 1.0:
                continue
            pids[f.stem] = proc.pid
        except (ValueError, KeyError, OSError, psutil.Error):
            continue
    return pids


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process and its live children; 0 if it is gone."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def measure(pids: dict[str, int], seconds: float) -> dict[str, float]:
    before = {name: tree_cpu(pid) for name, pid in pids.items()}
    time.sleep(seconds)
    return {name: (tree_cpu(pid) - before[name]) / seconds for name, pid in pids.items()}


# the instrument's split (../shared/peers, `idle_cpu_cores`): server = the broker and PostgreSQL, worker = the
# eight Flowline processes; `mcp` and the mail catcher are not counted there
SERVER = ("kafka", "postgres")
NOT_COUNTED = ("mcp", "mailcatcher")


def series(pids: dict[str, int], seconds: float, step: float) -> list[tuple[float, dict[str, float]]]:
    """Cores per process in consecutive `step`-second slices: (seconds since the start, cores by name)."""
    start = time.monotonic()
    before = {name: tree_cpu(pid) for name, pid in pids.items()}
    rows, at = [], start
    while at - start < seconds - 1e-6:
        at += step
        time.sleep(max(0.0, at - time.monotonic()))
        now = {name: tree_cpu(pid) for name, pid in pids.items()}
        rows.append((at - start, {name: (now[name] - before[name]) / step for name in pids}))
        before = now
    return rows


def split(cores: dict[str, float]) -> dict[str, float]:
    """Cores per process -> the instrument's server / worker figures, to compare with its idle window."""
    server = sum(c for name, c in cores.items() if name in SERVER)
    worker = sum(c for name, c in cores.items() if name not in SERVER and name not in NOT_COUNTED)
    return {"server": server, "worker": worker}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--profile", default=os.environ.get("FLOWLINE_PROFILE", "dev"))
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--series", type=float, default=0.0, metavar="S",
                    help="print one row per S-second slice of the window (what runs when)")
    args = ap.parse_args()
    state_dir = Path(os.environ.get("FLOWLINE_STATE_DIR") or REPO / ".flowline" / args.profile).resolve()
    pids = stack_pids(state_dir)
    if not pids:
        raise SystemExit(f"no running stack found under {state_dir}/run (deploy/stack up first)")
    if args.series:
        names = sorted(pids)
        print("t_s    " + " ".join(f"{n[:10]:>10s}" for n in names) + "  server  worker (% of a core)")
        for at, cores in series(pids, args.seconds, args.series):
            parts = split(cores)
            print(f"{at:5.1f}  " + " ".join(f"{cores[n] * 100:10.2f}" for n in names)
                  + f"  {parts['server'] * 100:6.2f}  {parts['worker'] * 100:6.2f}", flush=True)
        return
    cores = measure(pids, args.seconds)
    total = sum(cores.values())
    if args.json:
        print(json.dumps({"seconds": args.seconds, "cores": cores, "total_cores": total,
                          "instrument_cores": split(cores)}, indent=2))
        return
    for name, c in sorted(cores.items(), key=lambda kv: -kv[1]):
        print(f"{name:24s} {c * 100:6.2f} % of a core")
    print(f"{'total':24s} {total * 100:6.2f} % of a core over {args.seconds:.0f} s idle")
    parts = split(cores)
    print(f"as the instrument counts it (idle_cpu_cores): server {parts['server']:.3f}, worker {parts['worker']:.3f} "
          f"cores")


if __name__ == "__main__":
    main()
