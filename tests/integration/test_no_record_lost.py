"""No failure of a transaction may drop a record (issue 9.1), on the real broker.

A `TransactionalWorker` (the engine's runtime) reads a one-partition topic whose records say what their
processing does: succeed, produce a record too large for the client, produce a record too large for the
topic (refused by the broker at commit), fail to encode, raise. The good records are produced right
behind the bad ones, so they are already fetched when a transaction fails (the case that lost them).
Every good record must come out once, every bad one must be dead-lettered alone with its reason, and the
group's committed offset must reach the end.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from schemas.codec import Codec
from streams.processor import dead_letter
from streams.transactional import BatchResult, Outgoing, TransactionalWorker

pytestmark = pytest.mark.asyncio(loop_scope="session")

CODEC = Codec()


class ScriptedLogic:
    """Does to each record what its value says (`ok:`, `huge:`, `refused:`, `encode:`, `boom:`)."""

    def __init__(self, out_topic: str, small_topic: str) -> None:
        self.out_topic = out_topic
        self.small_topic = small_topic
        self.batches: list[int] = []

    async def assigned(self, partitions: set[int]) -> None:
        pass

    async def revoked(self, partitions: set[int]) -> None:
        pass

    async def process(self, partition: int, records) -> BatchResult:
        self.batches.append(len(records))
        out = []
        for record in records:
            kind = record.value.split(b":")[0]
            if kind == b"huge":  # bigger than the producer's max request: refused at send
                out.append(Outgoing(self.out_topic, record.key, b"x" * 2_000_000))
            elif kind == b"refused":  # within the client's limit, above the topic's: refused at commit
                out.append(Outgoing(self.small_topic, record.key, b"y" * 5_000))
            elif kind == b"encode":
                CODEC.encode(object())  # raises EncodeError, as a bad state would
            elif kind == b"boom":
                raise RuntimeError(f"processing {record.value!r} failed")
            else:
                out.append(Outgoing(self.out_topic, record.key, record.value))
        return BatchResult(records=out)


async def read_all(bootstrap: str, topic: str, expect: int, timeout: float = 60) -> list:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, isolation_level="read_committed",
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    found: list = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and len(found) < expect:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                found.extend(records)
        # a little longer: a duplicate would show up now
        for records in (await consumer.getmany(timeout_ms=500)).values():
            found.extend(records)
    finally:
        await consumer.stop()
    return found


async def committed(bootstrap: str, group: str, tp: TopicPartition) -> int | None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        return await consumer.committed(tp)
    finally:
        await consumer.stop()


def worker_for(bootstrap: str, topic: str, dlq: str, logic, group: str, **kw) -> TransactionalWorker:
    return TransactionalWorker(
        bootstrap_servers=bootstrap, group_id=group, topics=[topic], logic=logic,
        transactional_prefix=group, role="test", session_timeout_ms=6000,
        dead_letter=lambda record, reason, error_type: dead_letter(CODEC, dlq, record, reason, error_type, "test"),
        **kw)


async def test_every_failure_path_of_a_transaction_dead_letters_only_its_record(kafka_bootstrap, new_topic):
    source = await new_topic("in")
    out = await new_topic("out")
    dlq = await new_topic("dlq")
    small = await new_topic("small", **{"max.message.bytes": "1000"})
    group = f"g-{source}"
    logic = ScriptedLogic(out, small)
    worker = worker_for(kafka_bootstrap, source, dlq, logic, group)
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(worker.ready.wait(), 30)

    script = []
    for n in range(60):
        script.append(f"ok:{n}".encode())
        if n % 12 == 3:
            script.append(f"{['huge', 'refused', 'encode', 'boom', 'huge'][n // 12]}:{n}".encode())
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=50)
    await producer.start()
    try:
        for i, value in enumerate(script):  # one burst: the good records are fetched with the bad ones
            await producer.send(source, value, key=f"k{i}".encode())
        await producer.flush()
    finally:
        await producer.stop()

    good = [v for v in script if v.startswith(b"ok:")]
    bad = [v for v in script if not v.startswith(b"ok:")]
    try:
        outputs = await read_all(kafka_bootstrap, out, len(good))
        letters = await read_all(kafka_bootstrap, dlq, len(bad))
    finally:
        worker.stop()
        await asyncio.wait_for(task, 30)

    values = [r.value for r in outputs]
    assert sorted(values) == sorted(good), f"missing {set(good) - set(values)}, {len(values)} in all"
    decoded = [CODEC.decode(r.value) for r in letters]
    assert sorted(d.value for d in decoded) == sorted(bad)
    reasons = {d.value.split(b":")[0]: d.reason for d in decoded}
    assert "MessageSizeTooLarge" in reasons[b"huge"]
    assert "RecordTooLarge" in reasons[b"refused"] or "MessageSizeTooLarge" in reasons[b"refused"]
    assert "EncodeError" in reasons[b"encode"]
    assert "processing b'boom:39' failed" in reasons[b"boom"]
    assert all(d.error_type == "uncommittable" and d.source_topic == source for d in decoded)
    assert await committed(kafka_bootstrap, group, TopicPartition(source, 0)) == len(script)


async def test_a_fenced_worker_commits_nothing_twice_and_loses_nothing(kafka_bootstrap, new_topic):
    """A producer that is fenced while its worker still owns the partition (a transaction timeout, a zombie
    that came back) is replaced: the records fetched meanwhile are committed once, none is lost."""
    source = await new_topic("in")
    out = await new_topic("out")
    dlq = await new_topic("dlq")
    group = f"g-{source}"
    worker = worker_for(kafka_bootstrap, source, dlq, ScriptedLogic(out, out), group)
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(worker.ready.wait(), 30)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    rogue = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=f"{group}-p0")
    try:
        for n in range(10):
            await producer.send_and_wait(source, f"ok:{n}".encode())
        assert len(await read_all(kafka_bootstrap, out, 10)) == 10
        await rogue.start()  # init_transactions with the worker's id: the worker's producer is fenced
        for n in range(10, 30):
            await producer.send(source, f"ok:{n}".encode())
        await producer.flush()
        outputs = await read_all(kafka_bootstrap, out, 30, timeout=90)
    finally:
        await rogue.stop()
        await producer.stop()
        worker.stop()
        await asyncio.wait_for(task, 30)
    values = sorted(r.value for r in outputs)
    assert values == sorted(f"ok:{n}".encode() for n in range(30))
