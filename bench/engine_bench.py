"""Engine benchmark: the Flowline runtime against a Faust baseline running the same core, in one run.

    .venv/bin/python bench/engine_bench.py [--instances 3000] [--chains 40] [--partitions 3]

Uses the test-profile stack (started if needed) or $FLOWLINE_KAFKA_BOOTSTRAP. Each runtime gets fresh
topics. Two measurements per runtime, exactly-once on in both:
- throughput: N instances of a three-step automatic workflow pre-loaded on workflow.commands; the engine
  process's CPU time (user+system, psutil) from its first output to the last completion ->
  workflows per CPU-second;
- step latency: concurrent five-action chains; this script plays the action handler and measures, per
  step, the time from publishing a result to seeing the next step request (read_committed): one full
  engine round trip (consume, decide, transaction commit, visible downstream). Faust commits its
  transaction every `broker_commit_interval`; the baseline uses 0.5 s for latency (at 0.05 s it made no
  committed progress in our runs) and 2.8 s (its default) for throughput.
Results are printed as a table with Flowline/Faust ratios and written to bench/results/engine.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.workloads import TEMPLATES  # noqa: E402
from core import events as ev  # noqa: E402
from core.commands import ReportStepResult, StartInstance  # noqa: E402
from core.effects import StepRequest  # noqa: E402
from schemas import topics as topics_mod  # noqa: E402
from schemas.codec import Codec  # noqa: E402
from schemas.records import TemplateRecord  # noqa: E402

codec = Codec()


def bootstrap_servers() -> str:
    if os.environ.get("FLOWLINE_KAFKA_BOOTSTRAP"):
        return os.environ["FLOWLINE_KAFKA_BOOTSTRAP"]
    from deploy import stackctl as stack

    profile = stack.Profile.load("test")
    if not stack.is_up(profile):
        print("starting the test-profile stack ...", flush=True)
        stack.up(profile, processes=False, quiet=True)
    return profile.kafka_bootstrap


async def create_topics(bootstrap: str, prefix: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(prefix + s.name, s.num_partitions(partitions), 1,
                                            topic_configs=s.topic_configs()) for s in topics_mod.TOPICS])
    finally:
        await admin.close()
    await asyncio.sleep(1.0)  # let leaders settle


def spawn(runtime: str, bootstrap: str, prefix: str, partitions: int, log: Path,
          commit_interval: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if runtime == "flowline":
        env.update(FLOWLINE_KAFKA_BOOTSTRAP=bootstrap, FLOWLINE_TOPIC_PREFIX=prefix,
                   FLOWLINE_PARTITIONS=str(partitions), FLOWLINE_ENGINE_ID=f"bench-{prefix.rstrip('.')}")
        argv = [sys.executable, "-m", "streams", "processor"]
    else:
        env.update(BASELINE_BROKER=bootstrap, BASELINE_PREFIX=prefix, BASELINE_PARTITIONS=str(partitions),
                   BASELINE_APP_ID=f"bench-faust-{prefix.rstrip('.')}", BASELINE_COMMIT_INTERVAL=commit_interval)
        argv = [sys.executable, str(REPO / "bench" / "faust_baseline.py"), "worker", "-l", "info"]
    return subprocess.Popen(argv, cwd=REPO, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


async def publish_templates(producer: AIOKafkaProducer, prefix: str) -> None:
    for template_id, doc in TEMPLATES.items():
        record = TemplateRecord(template_id=template_id, version=1, tenant_id="t1", name=doc["name"],
                                status="ACTIVE", document=doc, updated_at=int(time.time() * 1000))
        await producer.send_and_wait(prefix + topics_mod.WORKFLOW_TEMPLATES, codec.encode(record),
                                     key=f"{template_id}:1".encode())


async def wait_ready(proc: subprocess.Popen, log: Path, runtime: str, timeout: float = 90) -> None:
    marker = "processor owns partitions" if runtime == "flowline" else "[^Worker]: Ready"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{runtime} exited early; see {log}")
        if log.exists() and marker in log.read_text(errors="replace"):
            return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"{runtime} did not become ready; see {log}")


async def throughput(runtime: str, bootstrap: str, partitions: int, instances: int, logs: Path) -> dict:
    """CPU seconds the engine spends from ready (idle, partitions owned) to the last completion."""
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    await create_topics(bootstrap, prefix, partitions)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, enable_idempotence=True)
    await producer.start()
    await publish_templates(producer, prefix)
    consumer = AIOKafkaConsumer(prefix + topics_mod.WORKFLOW_EVENTS, bootstrap_servers=bootstrap,
                                isolation_level="read_committed", auto_offset_reset="earliest")
    await consumer.start()
    log = logs / f"throughput-{runtime}.log"
    proc = spawn(runtime, bootstrap, prefix, partitions, log, "2.8")
    ps = psutil.Process(proc.pid)
    completed = events = 0
    try:
        await wait_ready(proc, log, runtime)
        await asyncio.sleep(1.0)
        cpu_start, wall_start = cpu_seconds(ps), time.monotonic()
        for n in range(instances):
            instance_id = f"wfi_bench_{n:06d}"
            await producer.send(prefix + topics_mod.WORKFLOW_COMMANDS, codec.encode(StartInstance(
                command_id=f"start:{instance_id}", instance_id=instance_id, template_id="tpl_auto3",
                template_version=1, tenant_id="t1", trigger={"amount": n + 1})), key=instance_id.encode())
        await producer.flush()
        deadline = time.monotonic() + 600
        while completed < instances and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200, max_records=5000)
            for records in batches.values():
                for record in records:
                    events += 1
                    if isinstance(codec.decode(record.value), ev.InstanceCompleted):
                        completed += 1
        cpu = cpu_seconds(ps) - cpu_start
        wall = time.monotonic() - wall_start
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        await consumer.stop()
        await producer.stop()
    return {"runtime": runtime, "instances": instances, "completed": completed, "events": events,
            "wall_seconds": round(wall, 2), "cpu_seconds": round(cpu, 2),
            "workflows_per_cpu_second": round(completed / cpu, 1) if cpu else None,
            "workflows_per_second": round(completed / wall, 1) if wall else None}


async def latency(runtime: str, bootstrap: str, partitions: int, chains: int, concurrency: int,
                  logs: Path) -> dict:
    """Step round trips of `chains` five-action chains, `concurrency` of them in flight at a time."""
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    await create_topics(bootstrap, prefix, partitions)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, enable_idempotence=True)
    await producer.start()
    await publish_templates(producer, prefix)
    consumer = AIOKafkaConsumer(prefix + topics_mod.step_topic("action"), bootstrap_servers=bootstrap,
                                isolation_level="read_committed", auto_offset_reset="earliest",
                                fetch_max_wait_ms=5)
    await consumer.start()
    log = logs / f"latency-{runtime}-c{concurrency}.log"
    proc = spawn(runtime, bootstrap, prefix, partitions, log, "0.5")
    await wait_ready(proc, log, runtime)
    await asyncio.sleep(1.0)
    sent_at: dict[str, float] = {}
    samples: list[float] = []
    started = done = 0

    async def start_next() -> None:
        nonlocal started
        instance_id = f"wfi_lat_{started:05d}"
        started += 1
        sent_at[instance_id] = time.perf_counter()
        await producer.send(prefix + topics_mod.WORKFLOW_COMMANDS, codec.encode(StartInstance(
            command_id=f"start:{instance_id}", instance_id=instance_id, template_id="tpl_chain5",
            template_version=1, tenant_id="t1", trigger={"amount": started})), key=instance_id.encode())

    for _ in range(min(concurrency, chains)):
        await start_next()
    deadline = time.monotonic() + 180
    try:
        while done < chains and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=100)
            for records in batches.values():
                for record in records:
                    request = codec.decode(record.value)
                    assert isinstance(request, StepRequest)
                    now = time.perf_counter()
                    if request.step > 1:
                        samples.append((now - sent_at[request.instance_id]) * 1000)
                    sent_at[request.instance_id] = time.perf_counter()
                    await producer.send(prefix + topics_mod.WORKFLOW_STEP_RESULTS, codec.encode(ReportStepResult(
                        command_id=f"result:{request.request_id}", instance_id=request.instance_id,
                        step=request.step, attempt=request.attempt, outcome="succeeded", output={"ok": True})),
                        key=request.instance_id.encode())
                    if request.step == 5:
                        done += 1
                        if started < chains:
                            await start_next()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        await consumer.stop()
        await producer.stop()
    samples.sort()

    def pct(p: float) -> float:
        return round(samples[min(len(samples) - 1, int(p * len(samples)))], 1) if samples else float("nan")

    return {"runtime": runtime, "chains": chains, "concurrency": concurrency, "steps_measured": len(samples),
            "p50_ms": pct(0.50), "p95_ms": pct(0.95), "p99_ms": pct(0.99),
            "max_ms": round(samples[-1], 1) if samples else None,
            "mean_ms": round(statistics.fmean(samples), 1) if samples else None}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--instances", type=int, default=3000)
    parser.add_argument("--chains", type=int, default=60, help="five-step chains per latency run")
    parser.add_argument("--concurrency", default="1,30", help="chains in flight, one latency run each")
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--runtimes", default="flowline,faust")
    args = parser.parse_args()
    bootstrap = bootstrap_servers()
    logs = REPO / ".flowline" / "bench"
    logs.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict] = {}
    for runtime in args.runtimes.split(","):
        print(f"[{runtime}] throughput: {args.instances} instances ...", flush=True)
        tp = await throughput(runtime, bootstrap, args.partitions, args.instances, logs)
        print(f"[{runtime}]   {tp}", flush=True)
        results[runtime] = {"throughput": tp}
        for concurrency in (int(c) for c in args.concurrency.split(",")):
            print(f"[{runtime}] latency: {args.chains} five-step chains, {concurrency} in flight ...", flush=True)
            lat = await latency(runtime, bootstrap, args.partitions, args.chains, concurrency, logs)
            print(f"[{runtime}]   {lat}", flush=True)
            results[runtime][f"latency_c{concurrency}"] = lat
    if {"flowline", "faust"} <= set(results):
        f, b = results["flowline"], results["faust"]
        ratio = {"workflows_per_cpu_second": round(f["throughput"]["workflows_per_cpu_second"] /
                                                   b["throughput"]["workflows_per_cpu_second"], 2)}
        print("\n| metric | Flowline | Faust baseline | Faust / Flowline |\n|---|---|---|---|")
        print(f"| workflows per CPU-second | {f['throughput']['workflows_per_cpu_second']} | "
              f"{b['throughput']['workflows_per_cpu_second']} | 1/{ratio['workflows_per_cpu_second']} |")
        for name in (k for k in f if k.startswith("latency_")):
            for key in ("p50_ms", "p99_ms"):
                fv, bv = f[name][key], b.get(name, {}).get(key)
                times = round(bv / fv, 1) if bv and fv and bv == bv else None
                ratio[f"{name}_{key}"] = times
                print(f"| step {key[:-3]} ms, {f[name]['concurrency']} in flight | {fv} | {bv} | {times}x |")
        results["ratio_flowline_over_faust"] = ratio
    out = REPO / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "engine.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
