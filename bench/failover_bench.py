"""Failover: how long do instances stall when an engine worker dies, and when it stops cleanly?

    .venv/bin/python bench/failover_bench.py [--chains 20] [--session-timeout-ms 6000]

Two engine processes share the partitions. This script plays the action handler for five-action chains
running continuously, then stops one worker (SIGTERM: it leaves the group at once; SIGKILL: the group
notices after the session timeout) and reports the longest time any instance waited for its next step
request across the stop, against the step round trip before it. Uses the test-profile stack (started if
needed) or $FLOWLINE_KAFKA_BOOTSTRAP.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.engine_bench import bootstrap_servers, create_topics, publish_templates, wait_ready  # noqa: E402
from core.commands import ReportStepResult, StartInstance  # noqa: E402
from schemas import topics as topics_mod  # noqa: E402
from schemas.codec import Codec  # noqa: E402

codec = Codec()


def spawn(bootstrap: str, prefix: str, app_id: str, session_ms: int, log: Path):
    import subprocess

    env = {**os.environ, "PYTHONPATH": str(REPO), "FLOWLINE_KAFKA_BOOTSTRAP": bootstrap,
           "FLOWLINE_TOPIC_PREFIX": prefix, "FLOWLINE_PARTITIONS": "4", "FLOWLINE_ENGINE_ID": app_id,
           "FLOWLINE_ENGINE_SESSION_TIMEOUT_MS": str(session_ms)}
    return subprocess.Popen([sys.executable, "-m", "streams", "processor"], cwd=REPO, env=env,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)


async def run(how: str, chains: int, session_ms: int) -> dict:
    bootstrap = bootstrap_servers()
    prefix = f"fo{uuid.uuid4().hex[:6]}."
    app_id = f"failover-{prefix.rstrip('.')}"
    await create_topics(bootstrap, prefix, 4)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, enable_idempotence=True)
    await producer.start()
    await publish_templates(producer, prefix)
    consumer = AIOKafkaConsumer(prefix + topics_mod.step_topic("action"), bootstrap_servers=bootstrap,
                                isolation_level="read_committed", auto_offset_reset="earliest", fetch_max_wait_ms=5)
    await consumer.start()
    logs = REPO / ".flowline" / "bench"
    logs.mkdir(parents=True, exist_ok=True)
    first = spawn(bootstrap, prefix, app_id, session_ms, logs / f"failover-{how}-1.log")
    await wait_ready(first, logs / f"failover-{how}-1.log", "flowline")
    second = spawn(bootstrap, prefix, app_id, session_ms, logs / f"failover-{how}-2.log")
    await wait_ready(second, logs / f"failover-{how}-2.log", "flowline")
    await asyncio.sleep(3)  # the rebalance to two workers settles
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
        while time.monotonic() - began < (8 + session_ms / 1000 * 3):
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
        for proc in (first, second):
            if proc.poll() is None:
                proc.terminate()
                proc.wait(30)
        await consumer.stop()
        await producer.stop()
    waits_before.sort()
    return {"stop": how, "session_timeout_ms": session_ms,
            "round_trip_p50_ms_before": round(waits_before[len(waits_before) // 2], 1) if waits_before else None,
            "longest_stall_across_stop_ms": round(max(waits_across), 1) if waits_across else None,
            "steps_across_stop": len(waits_across)}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chains", type=int, default=20)
    parser.add_argument("--session-timeout-ms", type=int, default=6000)
    args = parser.parse_args()
    for how in ("sigterm", "sigkill"):
        print(await run(how, args.chains, args.session_timeout_ms), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
