"""Which threads of the Kafka broker and which PostgreSQL processes take the CPU, and which requests the
broker answered, over a window of a running stack (issue 15).

    source your ports; deploy/stack up --profile test
    .venv/bin/python -m bench.broker_cpu --seconds 60                 # idle
    .venv/bin/python -m bench.broker_cpu -- .venv/bin/python -m bench.hops --workload short --in-flight 16

With a command after `--` the window is that command's run; without, `--seconds` of whatever the stack
does (idle, or a load started elsewhere). Why per thread: the broker is one JVM process, so `top` shows
one figure for network threads, request handlers, the transaction marker sender, GC, the JIT compilers,
the KRaft controller and the purgatory reapers; which of them to size (or which clients to make quieter)
depends on which one it is. The JVM's thread names come from `jcmd <pid> Thread.print` (the kernel keeps
only 15 characters of them); numbered threads of one kind are summed (`data-plane-kafka-request-handler-*`).

Request counts come from the broker's own meters (`kafka.network:type=RequestMetrics,name=RequestsPerSec`)
read through the JDK's attach API by `bench/KafkaRequestCounts.java` (`--no-requests` skips it: attaching
starts the JVM's local management agent, a few idle threads, in the measured broker until it restarts).
PostgreSQL's processes are told apart by their process title (`postgres: walwriter`, `... autovacuum
launcher`, a client backend's `postgres: postgres flowline 127.0.0.1(...) idle`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import psutil

from bench.idle_bench import REPO, stack_pids

TICKS = os.sysconf("SC_CLK_TCK")
JAVA_HELPER = Path(__file__).resolve().parent / "KafkaRequestCounts.java"


def thread_names(pid: int) -> dict[int, str]:
    """Native thread id -> the JVM's full thread name (GC and compiler threads included)."""
    try:
        dump = subprocess.run(["jcmd", str(pid), "Thread.print"], capture_output=True, text=True,
                              timeout=60, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    names = {}
    for m in re.finditer(r'^"([^"]+)".*?nid=(0x[0-9a-f]+)', dump, re.M):
        names[int(m.group(2), 16)] = m.group(1)
    return names


def kind(name: str) -> str:
    """A thread name with its instance numbers folded: the rows of the table."""
    name = re.sub(r"ListenerName\([^)]*\)-", "", name)
    return re.sub(r"\d+", "N", name)


def thread_ticks(pid: int) -> dict[int, tuple[str, int]]:
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
            comm = stat[stat.index("(") + 1:stat.rindex(")")]
            fields = stat[stat.rindex(")") + 2:].split()
            out[int(task.name)] = (comm, int(fields[11]) + int(fields[12]))  # utime + stime
        except (OSError, ValueError):
            continue
    return out


def pg_ticks(pids: list[int]) -> dict[str, float]:
    """CPU seconds of each PostgreSQL process by its title (client backends folded into one row)."""
    out: dict[str, float] = defaultdict(float)
    for pid in pids:
        try:
            root = psutil.Process(pid)
            for p in (root, *root.children(recursive=True)):
                title = " ".join(" ".join(p.cmdline()).split()) or p.name()
                title = "client backends" if re.search(r"\d+\.\d+\.\d+\.\d+\(\d+\)", title) else \
                    re.sub(r"^postgres: ", "", title).split(" -D ")[0]
                t = p.cpu_times()
                out[f"{title} [{p.pid}]" if title != "client backends" else title] += t.user + t.system
        except psutil.Error:
            continue
    return out


def request_counts(pid: int) -> dict[str, int]:
    proc = subprocess.run(["java", str(JAVA_HELPER), str(pid)], capture_output=True, text=True, timeout=120,
                          check=False)
    if proc.returncode != 0:
        print(f"(request counts unavailable: {proc.stderr.strip()[-300:]})", file=sys.stderr)
        return {}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--profile", default=os.environ.get("FLOWLINE_PROFILE", "test"))
    parser.add_argument("--no-requests", action="store_true", help="do not attach to the broker's JVM")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- a command whose run is the window")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    state_dir = Path(os.environ.get("FLOWLINE_STATE_DIR") or REPO / ".flowline" / args.profile).resolve()
    pids = stack_pids(state_dir)
    if "kafka" not in pids:
        raise SystemExit(f"no running broker under {state_dir}/run (deploy/stack up first)")
    kpid = pids["kafka"]
    names = thread_names(kpid)
    pg = [pids["postgres"]] if "postgres" in pids else []
    req0 = {} if args.no_requests else request_counts(kpid)
    t0, th0, pg0 = time.monotonic(), thread_ticks(kpid), pg_ticks(pg)
    if command:
        subprocess.run(command, check=False)
    else:
        time.sleep(args.seconds)
    t1, th1, pg1 = time.monotonic(), thread_ticks(kpid), pg_ticks(pg)
    req1 = {} if args.no_requests else request_counts(kpid)
    window = t1 - t0
    names.update({tid: n for tid, n in thread_names(kpid).items() if tid not in names})
    threads: dict[str, float] = defaultdict(float)
    for tid, (comm, ticks) in th1.items():
        threads[kind(names.get(tid, comm))] += (ticks - th0.get(tid, (comm, 0))[1]) / TICKS
    postgres = {k: v - pg0.get(k, 0.0) for k, v in pg1.items()}
    requests = {k: v - req0.get(k, 0) for k, v in req1.items() if v - req0.get(k, 0)}
    result = {"seconds": round(window, 1), "load_average": os.getloadavg()[0],
              "kafka_threads_cpu_s": {k: round(v, 3) for k, v in sorted(threads.items(), key=lambda kv: -kv[1])
                                      if v > 0},
              "kafka_cpu_s": round(sum(threads.values()), 3),
              "postgres_cpu_s": {k: round(v, 3) for k, v in sorted(postgres.items(), key=lambda kv: -kv[1])
                                 if v > 0},
              "requests": dict(sorted(requests.items(), key=lambda kv: -kv[1]))}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"window {window:.1f} s, load average {result['load_average']:.2f}; Kafka {result['kafka_cpu_s']:.2f} "
          f"CPU-s ({result['kafka_cpu_s'] / window * 100:.2f} % of a core)")
    for k, v in result["kafka_threads_cpu_s"].items():
        print(f"  {k:60s} {v:7.2f} s {v / window * 100:6.2f} %")
    print("PostgreSQL")
    for k, v in result["postgres_cpu_s"].items():
        print(f"  {k:60s} {v:7.2f} s {v / window * 100:6.2f} %")
    if requests:
        print("requests (count, per second)")
        for k, v in result["requests"].items():
            print(f"  {k:30s} {v:8d} {v / window:8.1f}/s")


if __name__ == "__main__":
    main()
