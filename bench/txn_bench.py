"""What one bare Kafka transaction costs the client process: aiokafka (the engine's) against librdkafka.

    source your ports; deploy/stack up --profile test      # or any broker: FLOWLINE_KAFKA_BOOTSTRAP
    .venv/bin/python -m bench.txn_bench [--transactions 400] [--rounds 2]

Why (issue 15): at 16 workflows in flight the engine spends about 2.5 ms of CPU per transaction for about
1.7 records, and the machine is saturated there, so CPU per transaction is latency. This isolates the part
no engine code can cut: a transaction of the engine's usual shape (three records to one partition and one
to a partition of another topic, as a step's changelog and event records), begun, sent, acknowledged and
committed in a loop by one transactional producer, nothing else in the process. CPU is the process's
user+system time (librdkafka's own threads included), wall is per transaction.

librdkafka is measured through `confluent-kafka`, which the project does not depend on: install it into the
venv to compare (`.venv/bin/pip install confluent-kafka`); without it only aiokafka is measured. Rounds
alternate the two clients so that both see the same machine load.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import time
import uuid

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

VALUE = b"x" * 300


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def topics(bootstrap: str) -> tuple[str, str]:
    names = (f"txn-bench-{uuid.uuid4().hex[:8]}-a", f"txn-bench-{uuid.uuid4().hex[:8]}-b")
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, 2, 1) for name in names])
    finally:
        await admin.close()
    await asyncio.sleep(1)  # let the new partitions get their leader
    return names


async def aiokafka_round(bootstrap: str, names: tuple[str, str], n: int) -> tuple[float, float]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"txn-bench-{uuid.uuid4().hex}",
                                enable_idempotence=True, linger_ms=1, retry_backoff_ms=5)
    await producer.start()
    try:
        for measured in (False, True):
            cpu, wall = cpu_seconds(), time.perf_counter()
            for _ in range(n if measured else 50):
                await producer.begin_transaction()
                sent = [await producer.send(names[0], VALUE, key=b"k", partition=1) for _ in range(3)]
                sent.append(await producer.send(names[1], VALUE, key=b"k", partition=1))
                await asyncio.gather(*sent)
                await producer.commit_transaction()
        return (cpu_seconds() - cpu) / n * 1000, (time.perf_counter() - wall) / n * 1000
    finally:
        await producer.stop()


def librdkafka_round(bootstrap: str, names: tuple[str, str], n: int) -> tuple[float, float]:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"txn-bench-{uuid.uuid4().hex}",
                         "enable.idempotence": True, "linger.ms": 1})
    producer.init_transactions(30)
    for measured in (False, True):
        cpu, wall = cpu_seconds(), time.perf_counter()
        for _ in range(n if measured else 50):
            producer.begin_transaction()
            for _ in range(3):
                producer.produce(names[0], VALUE, key=b"k", partition=1)
            producer.produce(names[1], VALUE, key=b"k", partition=1)
            producer.commit_transaction(30)  # flushes: every record acknowledged first
    return (cpu_seconds() - cpu) / n * 1000, (time.perf_counter() - wall) / n * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transactions", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    port = os.environ.get("FLOWLINE_KAFKA_PORT", "29092")
    bootstrap = os.environ.get("FLOWLINE_KAFKA_BOOTSTRAP", f"127.0.0.1:{port}")
    try:
        import confluent_kafka
    except ImportError:
        confluent_kafka = None
        print("confluent-kafka is not installed: measuring aiokafka only (see the module's docstring)")
    names = asyncio.run(topics(bootstrap))
    print(f"bare transactions of 4 records, {args.transactions} per round; load average {os.getloadavg()[0]:.1f}")
    for n in range(1, args.rounds + 1):
        cpu, wall = asyncio.run(aiokafka_round(bootstrap, names, args.transactions))
        print(f"round {n} aiokafka    {cpu:6.3f} ms CPU  {wall:6.2f} ms wall per transaction")
        if confluent_kafka is not None:
            cpu, wall = librdkafka_round(bootstrap, names, args.transactions)
            print(f"round {n} librdkafka {cpu:6.3f} ms CPU  {wall:6.2f} ms wall per transaction "
                  f"(librdkafka {confluent_kafka.libversion()[0]})")


if __name__ == "__main__":
    main()
