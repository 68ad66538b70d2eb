"""The peers instrument's Flowline driver consumer alone, to measure what its polling costs an idle broker.

`../shared/peers/flowline_peer.py` reads `workflow.events` and `workflow.dlq` with no group, read_committed
and `fetch_max_wait_ms=100`: ten fetches a second while nothing happens, which the instrument's idle
window counts as the engine's server CPU (docs/performance.md, "The idle window, right after start and
right after load"). Run it beside an idle stack and compare `bench/broker_cpu.py --seconds 40` with and
without it:

    .venv/bin/python -m bench.peers_driver_consumer --seconds 50 &   # FLOWLINE_KAFKA_BOOTSTRAP or --bootstrap
"""
from __future__ import annotations

import argparse
import asyncio
import os

from aiokafka import AIOKafkaConsumer


async def run(bootstrap: str, seconds: float) -> None:
    consumer = AIOKafkaConsumer("workflow.events", "workflow.dlq", bootstrap_servers=bootstrap, group_id=None,
                                isolation_level="read_committed", enable_auto_commit=False,
                                auto_offset_reset="latest", fetch_max_wait_ms=100)
    await consumer.start()
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    try:
        while loop.time() < end:
            await consumer.getmany(timeout_ms=200, max_records=5000)
    finally:
        await consumer.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=50.0)
    ap.add_argument("--bootstrap", default=os.environ.get("FLOWLINE_KAFKA_BOOTSTRAP", "127.0.0.1:19092"))
    args = ap.parse_args()
    asyncio.run(run(args.bootstrap, args.seconds))


if __name__ == "__main__":
    main()
