"""The pinned clients (aiokafka 0.14, faust-streaming 0.15.3) against the real Apache Kafka 4.1.1 broker."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

pytestmark = pytest.mark.integration

FAUST_APP = Path(__file__).with_name("faust_eos_app.py")
REPO_ROOT = Path(__file__).resolve().parents[2]


async def consume_all(bootstrap: str, topic: str, expected: int, *, timeout: float = 30.0,
                      isolation_level: str = "read_committed", group_id: str | None = None):
    """Read `topic` from the beginning until `expected` records arrived (or timeout); returns them."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group_id,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                isolation_level=isolation_level)
    await consumer.start()
    records = []
    try:
        deadline = time.monotonic() + timeout
        while len(records) < expected and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for msgs in batch.values():
                records.extend(msgs)
        # a short extra poll catches records that should NOT be there
        for msgs in (await consumer.getmany(timeout_ms=1000)).values():
            records.extend(msgs)
    finally:
        await consumer.stop()
    return records


async def test_produce_consume_in_group_and_commit(kafka_bootstrap, new_topic):
    topic = await new_topic("plain", partitions=3)
    group = f"g-{uuid.uuid4().hex[:8]}"
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for i in range(30):
            await producer.send_and_wait(topic, f"v{i}".encode(), key=f"k{i % 5}".encode())
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka_bootstrap, group_id=group,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    seen = []
    try:
        deadline = time.monotonic() + 30
        while len(seen) < 30 and time.monotonic() < deadline:
            for msgs in (await consumer.getmany(timeout_ms=500)).values():
                seen.extend(msgs)
        assert len(seen) == 30
        # per-key order is preserved (same key -> same partition)
        by_key: dict[bytes, list[int]] = {}
        for m in seen:
            by_key.setdefault(m.key, []).append(int(m.value[1:]))
        assert all(v == sorted(v) for v in by_key.values())
        await consumer.commit()
        committed = {tp: await consumer.committed(tp) for tp in consumer.assignment()}
        assert sum(committed.values()) == 30
    finally:
        await consumer.stop()

    # a new member of the same group resumes after the committed offsets: nothing left to read
    again = AIOKafkaConsumer(topic, bootstrap_servers=kafka_bootstrap, group_id=group,
                             auto_offset_reset="earliest", enable_auto_commit=False)
    await again.start()
    try:
        leftover = await again.getmany(timeout_ms=3000)
        assert sum(len(v) for v in leftover.values()) == 0
    finally:
        await again.stop()


async def test_transactions_commit_and_abort_with_consumer_offsets(kafka_bootstrap, new_topic):
    src = await new_topic("src", partitions=1)
    out = await new_topic("out", partitions=2)
    group = f"tx-{uuid.uuid4().hex[:8]}"

    plain = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await plain.start()
    try:
        for i in range(10):
            await plain.send_and_wait(src, f"in{i}".encode(), key=b"k")
    finally:
        await plain.stop()

    consumer = AIOKafkaConsumer(src, bootstrap_servers=kafka_bootstrap, group_id=group,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                isolation_level="read_committed")
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=f"{group}-0")
    await consumer.start()
    await producer.start()
    try:
        got = []
        deadline = time.monotonic() + 30
        while len(got) < 10 and time.monotonic() < deadline:
            for msgs in (await consumer.getmany(timeout_ms=500)).values():
                got.extend(msgs)
        assert len(got) == 10
        tp = TopicPartition(src, 0)

        # committed transaction: outputs + the consumer's offsets, atomically
        async with producer.transaction():
            for m in got:
                await producer.send(out, b"ok-" + m.value, key=m.key)
            await producer.send_offsets_to_transaction({tp: got[-1].offset + 1}, group)

        # aborted transaction: its records must stay invisible to read_committed consumers
        await producer.begin_transaction()
        for i in range(5):
            await producer.send(out, f"aborted{i}".encode(), key=b"k")
        await producer.abort_transaction()
    finally:
        await producer.stop()
        await consumer.stop()

    committed = await consume_all(kafka_bootstrap, out, 10, isolation_level="read_committed")
    values = sorted(m.value for m in committed)
    assert values == sorted(b"ok-in%d" % i for i in range(10))
    assert not any(v.startswith(b"aborted") for v in values)

    uncommitted = await consume_all(kafka_bootstrap, out, 15, isolation_level="read_uncommitted")
    assert sum(1 for m in uncommitted if m.value.startswith(b"aborted")) == 5  # they were written, then aborted

    check = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=group, enable_auto_commit=False)
    await check.start()
    try:
        assert await check.committed(TopicPartition(src, 0)) == 10
    finally:
        await check.stop()


async def test_faust_exactly_once_agent_with_table(kafka_bootstrap, new_topic, tmp_path):
    partitions = 3
    src = await new_topic("fsrc", partitions=partitions)
    out = await new_topic("fout", partitions=partitions)
    app_id = f"flowline-compat-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "FAUST_APP_ID": app_id,
        "FAUST_BROKER": kafka_bootstrap,
        "FAUST_IN_TOPIC": src,
        "FAUST_OUT_TOPIC": out,
        "FAUST_PARTITIONS": str(partitions),
        "FAUST_DATADIR": str(tmp_path / "faust-data"),
        "PYTHONPATH": str(REPO_ROOT),
    }
    log_path = tmp_path / "faust-worker.log"
    with log_path.open("wb") as log:
        worker = subprocess.Popen([sys.executable, str(FAUST_APP), "worker", "-l", "info"], env=env,
                                  stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, start_new_session=True)
    try:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        try:
            for i in range(20):
                await producer.send_and_wait(src, f"e{i}".encode(), key=f"k{i % 4}".encode())
        finally:
            await producer.stop()

        records = await consume_all(kafka_bootstrap, out, 20, timeout=120)
        assert worker.poll() is None, f"worker died:\n{log_path.read_text()[-3000:]}"
        assert len(records) == 20, f"got {len(records)} outputs; worker log:\n{log_path.read_text()[-3000:]}"
        assert Counter(m.key for m in records) == {b"k0": 5, b"k1": 5, b"k2": 5, b"k3": 5}
        last = {}
        for m in records:
            last[m.key] = max(last.get(m.key, 0), int(m.value.rsplit(b"|", 1)[1]))
        assert last == {b"k0": 5, b"k1": 5, b"k2": 5, b"k3": 5}

        changelog = f"{app_id}-counts-changelog"
        entries = await consume_all(kafka_bootstrap, changelog, 20, timeout=30)
        assert entries, "the table changelog has no committed records"
        final = {}
        for m in entries:
            final[json.loads(m.key)] = json.loads(m.value)
        assert final == {"k0": 5, "k1": 5, "k2": 5, "k3": 5}
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                await asyncio.to_thread(worker.wait, 30)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait(5)
