"""The librdkafka producer of the handlers and the payment simulator (schemas/producer.py) on the real broker.

What must not change when a process moves from aiokafka's producer to it: where a keyed record lands (an
instance's step results are keyed by instance id, and every reader that co-partitions by key expects the
Java client's murmur2 placement, which aiokafka uses; librdkafka's own default is a CRC32 hash), and that
a record the broker can never take is reported as such (the runtime dead-letters it) while an outage is
reported as transient (the runtime sends again)."""

from __future__ import annotations

import uuid

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.partitioner import DefaultPartitioner

from schemas.producer import AsyncProducer, ProduceError

pytestmark = pytest.mark.asyncio(loop_scope="session")

PARTITIONS = 6


@pytest.fixture
async def topic(kafka_bootstrap):
    name = f"test.producer.{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, PARTITIONS, 1)])
        yield name
    finally:
        await admin.delete_topics([name])
        await admin.close()


async def test_a_keyed_record_lands_where_aiokafka_puts_it_and_is_read_back(kafka_bootstrap, topic):
    producer = AsyncProducer(kafka_bootstrap)
    await producer.start()
    partitioner = DefaultPartitioner()
    keys = [f"wfi_{uuid.uuid4().hex}".encode() for _ in range(60)]
    try:
        delivered = [await producer.send_and_wait(topic, b"v" + key, key=key) for key in keys]
    finally:
        await producer.stop()
    expected = [partitioner(key, list(range(PARTITIONS)), list(range(PARTITIONS))) for key in keys]
    assert [d.partition for d in delivered] == expected
    assert len(set(expected)) > 1  # the keys spread: the comparison says something

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest",
                                isolation_level="read_committed")
    await consumer.start()
    try:
        seen: dict[bytes, tuple[int, int]] = {}
        while len(seen) < len(keys):
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                seen.update({r.key: (r.partition, r.offset) for r in records if r.value == b"v" + r.key})
    finally:
        await consumer.stop()
    assert {key: (d.partition, d.offset) for key, d in zip(keys, delivered, strict=True)} == seen


async def test_a_record_too_large_is_refused_for_good_and_the_next_one_goes_through(kafka_bootstrap, topic):
    producer = AsyncProducer(kafka_bootstrap)
    await producer.start()
    try:
        with pytest.raises(ProduceError) as refused:
            await producer.send_and_wait(topic, b"x" * 2_000_000, key=b"k")
        assert not refused.value.transient
        assert "MSG_SIZE_TOO_LARGE" in str(refused.value)
        assert (await producer.send_and_wait(topic, b"small", key=b"k")).offset >= 0
    finally:
        await producer.stop()


async def test_an_unreachable_broker_is_a_transient_failure():
    producer = AsyncProducer("127.0.0.1:1", **{"message.timeout.ms": 1500})
    await producer.start()
    try:
        with pytest.raises(ProduceError) as failed:
            await producer.send_and_wait("any.topic", b"v", key=b"k")
        assert failed.value.transient
    finally:
        await producer.stop(timeout=1)
