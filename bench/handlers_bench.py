"""Handler throughput: requests/s one handler process completes against a local receiver.

    .venv/bin/python -m bench.handlers_bench [--requests 2000] [--concurrency 32] [--kinds external,notification,action]

Needs a running stack (`deploy/stack up --profile test --no-processes`; FLOWLINE_KAFKA_BOOTSTRAP, default
127.0.0.1:29092). Each kind gets fresh prefixed topics; N step requests are produced first, then one
handler (its real composition root, in this process) is started and the clock runs until N results are on
`workflow.step-results`. The receiver (aiohttp, or the payment simulator for `action`) runs in the same
process, so on a 2-core machine the figure includes the receiver's CPU: a floor, not a ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from core.effects import StepRequest
from deploy import topics
from deploy.payment_simulator import PaymentSimulator
from handlers.main import HandlerProcess
from handlers.settings import HandlerSettings
from schemas.codec import Codec


async def receiver() -> tuple[object, int]:
    from aiohttp import web

    async def ok(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"total_amount": 900, "status": "open"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", ok)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    return runner, port


def request(kind: str, n: int, url: str) -> StepRequest:
    config = {"external": {"url": f"{url}/po/{n}", "method": "GET", "timeout_seconds": 10},
              "notification": {"channel": "webhook", "url": f"{url}/hooks", "body": {"n": n}},
              "action": {"action": "execute_transfer", "params": {"transfer_id": f"tr_{n}"}, "timeout_seconds": 30},
              }[kind]
    return StepRequest(request_id=f"wfi_{n}:1:1", instance_id=f"wfi_{n}", tenant_id="t1", template_id="tpl",
                       template_version=1, step=1, step_name="bench", step_key="bench", kind=kind, attempt=1,
                       config=config, context={}, requested_at=int(time.time() * 1000))


async def bench(kind: str, bootstrap: str, count: int, concurrency: int, partitions: int) -> float:
    prefix = f"bench{os.getpid()}{kind[:3]}{int(time.time())}."
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    specs = [replace(s, name=prefix + s.name) for s in topics.TOPICS]
    await admin.create_topics([NewTopic(s.name, s.num_partitions(partitions), 1, topic_configs=s.topic_configs())
                               for s in specs])
    await admin.close()
    codec = Codec()
    runner, port = await receiver()
    url = f"http://127.0.0.1:{port}"
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    for n in range(count):
        await producer.send(prefix + topics.step_topic(kind), codec.encode(request(kind, n, url)),
                            key=f"wfi_{n}".encode())
    await producer.flush()
    await producer.stop()
    simulator = sim_task = None
    if kind == "action":
        simulator = PaymentSimulator(bootstrap_servers=bootstrap, topic_prefix=prefix,
                                     ledger=Path(tempfile.mkdtemp()) / "ledger.jsonl")
        sim_task = asyncio.create_task(simulator.run())
        await simulator.ready.wait()
    consumer = AIOKafkaConsumer(prefix + topics.WORKFLOW_STEP_RESULTS, bootstrap_servers=bootstrap,
                                auto_offset_reset="earliest")
    await consumer.start()
    settings = HandlerSettings(bootstrap_servers=bootstrap, topic_prefix=prefix, concurrency=concurrency,
                               allow_private_networks=("127.0.0.0/8:*",))
    process = HandlerProcess(kind, settings)
    started = time.perf_counter()
    task = asyncio.create_task(process.run())
    seen = 0
    outcomes: dict[str, int] = {}
    while seen < count:
        for records in (await consumer.getmany(timeout_ms=200)).values():
            for record in records:
                result = codec.decode(record.value)
                outcomes[result.outcome] = outcomes.get(result.outcome, 0) + 1
                seen += 1
    elapsed = time.perf_counter() - started
    process.stop()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(task, 20)
    await consumer.stop()
    if simulator is not None:
        simulator.stop()
        await sim_task
    await runner.cleanup()
    rate = count / elapsed
    print(f"{kind:13s} {count} requests, concurrency {concurrency}: {elapsed:6.2f} s incl. start-up -> "
          f"{rate:7.0f} requests/s  outcomes {outcomes}", flush=True)
    return rate


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--kinds", default="external,notification,action")
    args = parser.parse_args()
    bootstrap = os.environ.get("FLOWLINE_KAFKA_BOOTSTRAP", "127.0.0.1:29092")
    for kind in args.kinds.split(","):
        await bench(kind, bootstrap, args.requests, args.concurrency, args.partitions)


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.ERROR)
    asyncio.run(main())
