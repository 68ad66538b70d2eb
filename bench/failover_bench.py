"""Failover: how long do instances stall when an engine worker dies, and when it stops cleanly?

    .venv/bin/python bench/failover_bench.py [--chains 20] [--waiting 40000] [--session-timeout-ms 6000]

Two engine processes share the partitions. This script plays the action handler for five-action chains
running continuously, then stops one worker (SIGTERM: it leaves the group at once; SIGKILL: the group
notices after the session timeout) and reports the longest time any instance waited for its next step
request across the stop, against the step round trip before it. Uses the test-profile stack (started if
needed) or $FLOWLINE_KAFKA_BOOTSTRAP.

With `--waiting N` (default 40,000) the changelog holds N procurement instances waiting for an approval
before the workers start (copies of a state the pure core decided, bench/state_scale_bench.py), so that
taking over the dead worker's partitions has real state to restore. The SIGKILL case runs twice, on fresh
topics each: without standby replicas (the survivor reads those partitions' whole changelog) and with one
(it has followed them and reads only the last moments); the survivor's changelog reads are printed too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
import urllib.request
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.engine_bench import bootstrap_servers, create_topics, publish_templates, wait_ready  # noqa: E402
from bench.state_scale_bench import core_sample, fill_changelog  # noqa: E402
from core.builtin import builtin_template  # noqa: E402
from core.commands import ReportStepResult, StartInstance  # noqa: E402
from schemas import topics as topics_mod  # noqa: E402
from schemas.codec import Codec  # noqa: E402
from schemas.records import TemplateRecord  # noqa: E402

codec = Codec()


def spawn(bootstrap: str, prefix: str, app_id: str, session_ms: int, log: Path, standby: int, state_dir: Path,
          http_port: int):
    import subprocess

    env = {**os.environ, "PYTHONPATH": str(REPO), "FLOWLINE_KAFKA_BOOTSTRAP": bootstrap,
           "FLOWLINE_TOPIC_PREFIX": prefix, "FLOWLINE_PARTITIONS": "4", "FLOWLINE_ENGINE_ID": app_id,
           "FLOWLINE_ENGINE_SESSION_TIMEOUT_MS": str(session_ms), "FLOWLINE_ENGINE_STANDBY_REPLICAS": str(standby),
           # each worker on a disk of its own, as on two hosts: the survivor has no copy it did not make itself
           "FLOWLINE_ENGINE_STATE_DIR": str(state_dir), "FLOWLINE_ENGINE_HTTP_PORT": str(http_port)}
    return subprocess.Popen([sys.executable, "-m", "streams", "processor"], cwd=REPO, env=env,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)


def health(port: int) -> dict:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
            return json.loads(response.read())
    except Exception:
        return {}


async def run(how: str, chains: int, session_ms: int, waiting: int = 0, standby: int = 1) -> dict:
    bootstrap = bootstrap_servers()
    prefix = f"fo{uuid.uuid4().hex[:6]}."
    app_id = f"failover-{prefix.rstrip('.')}"
    await create_topics(bootstrap, prefix, 4)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, enable_idempotence=True)
    await producer.start()
    await publish_templates(producer, prefix)
    if waiting:
        doc = builtin_template("procurement_approval")
        await producer.send_and_wait(prefix + topics_mod.WORKFLOW_TEMPLATES, codec.encode(TemplateRecord(
            template_id="tpl_procurement", version=1, tenant_id="t1", name=doc["name"], status="ACTIVE",
            document=doc, updated_at=int(time.time() * 1000))), key=b"tpl_procurement:1")
        await fill_changelog(bootstrap, prefix + topics_mod.ENGINE_INSTANCES_CHANGELOG, 4, core_sample(), "wait", 0,
                             waiting)
    consumer = AIOKafkaConsumer(prefix + topics_mod.step_topic("action"), bootstrap_servers=bootstrap,
                                isolation_level="read_committed", auto_offset_reset="earliest", fetch_max_wait_ms=5)
    await consumer.start()
    logs = REPO / ".flowline" / "bench"
    logs.mkdir(parents=True, exist_ok=True)
    name = f"{how}-standby{standby}"
    state = logs / f"failover-state-{prefix.rstrip('.')}"
    port = int(os.environ.get("FLOWLINE_GATEWAY_PORT", "28700")) + 10
    first = spawn(bootstrap, prefix, app_id, session_ms, logs / f"failover-{name}-1.log", standby, state / "1",
                  port)
    await wait_ready(first, logs / f"failover-{name}-1.log", "flowline", timeout=600)
    second = spawn(bootstrap, prefix, app_id, session_ms, logs / f"failover-{name}-2.log", standby, state / "2",
                   port + 1)
    await wait_ready(second, logs / f"failover-{name}-2.log", "flowline", timeout=600)
    settle = time.monotonic() + 600
    while time.monotonic() < settle:  # the rebalance to two workers settles, standbys (if any) caught up
        await asyncio.sleep(1)
        reports = [health(port), health(port + 1)]
        if all(r.get("status") == "ready" and r["partitions"].get("processor") for r in reports) and (
                not standby or all(len(r["standby_partitions"]) >= 2 for r in reports)):
            break
    await asyncio.sleep(3 + waiting / 20_000)  # standbys read what the rebalance left to read
    before = health(port + 1).get("restore_reads", {})
    sent_at: dict[str, float] = {}
    waits_before: list[float] = []
    waits_across: list[float] = []
    serial = 0

    async def start_chain() -> None:
        nonlocal serial
        instance_id = f"wfi_fo_{serial:05d}"
        serial += 1
        sent_at[instance_id] = time.perf_counter()
        await producer.send(prefix + topics_mod.WORKFLOW_COMMANDS, codec.encode(StartInstance(
            command_id=f"start:{instance_id}", instance_id=instance_id, template_id="tpl_chain5",
            template_version=1, tenant_id="t1", trigger={})), key=instance_id.encode())

    for _ in range(chains):
        await start_chain()
    stopped_at = None
    began = time.monotonic()
    try:
        while time.monotonic() - began < (8 + session_ms / 1000 * 3 + waiting / 2_000):
            if stopped_at is None and time.monotonic() - began > 4:
                stopped_at = time.perf_counter()
                (first.send_signal(signal.SIGTERM) if how == "sigterm" else first.kill())
            for records in (await consumer.getmany(timeout_ms=50)).values():
                for record in records:
                    request = codec.decode(record.value)
                    now = time.perf_counter()
                    wait = (now - sent_at[request.instance_id]) * 1000
                    if stopped_at is not None and sent_at[request.instance_id] <= stopped_at:
                        waits_across.append(wait)
                    elif stopped_at is None:
                        waits_before.append(wait)
                    sent_at[request.instance_id] = time.perf_counter()
                    await producer.send(prefix + topics_mod.WORKFLOW_STEP_RESULTS, codec.encode(ReportStepResult(
                        command_id=f"result:{request.request_id}", instance_id=request.instance_id,
                        step=request.step, attempt=request.attempt, outcome="succeeded", output={})),
                        key=request.instance_id.encode())
                    if request.step == 5:
                        await start_chain()
    finally:
        await consumer.stop()
        await producer.stop()
    after = health(port + 1).get("restore_reads", {}) if second.poll() is None else {}
    for proc in (first, second):
        if proc.poll() is None:
            proc.terminate()
            proc.wait(30)
    waits_before.sort()
    return {"stop": how, "standby_replicas": standby, "waiting_instances": waiting, "session_timeout_ms": session_ms,
            "survivor_reads_at_takeover": {k: after.get(k, 0) - before.get(k, 0) for k in after},
            "round_trip_p50_ms_before": round(waits_before[len(waits_before) // 2], 1) if waits_before else None,
            "longest_stall_across_stop_ms": round(max(waits_across), 1) if waits_across else None,
            "steps_across_stop": len(waits_across)}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chains", type=int, default=20)
    parser.add_argument("--session-timeout-ms", type=int, default=6000)
    parser.add_argument("--waiting", type=int, default=40_000, help="instances waiting in the changelog")
    args = parser.parse_args()
    results = [await run("sigterm", args.chains, args.session_timeout_ms, args.waiting, standby=1)]
    print(results[-1], flush=True)
    for standby in (0, 1):
        results.append(await run("sigkill", args.chains, args.session_timeout_ms, args.waiting, standby=standby))
        print(results[-1], flush=True)
    out = REPO / "bench" / "results" / "failover.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {out.relative_to(REPO)}")


if __name__ == "__main__":
    asyncio.run(main())
