"""The processor's transactional producer on librdkafka (`RdTransactionalProducer`, docs/adr/0019), on the real
broker: how each failure it can meet ends (fenced, a record the broker refuses), that a failed transaction
leaves nothing visible and the producer goes on, the offsets it reports, and where it puts a keyed record.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError, OutOfOrderSequenceNumber, ProducerFenced

from schemas.errors import is_transient
from streams.transactional import Outgoing, RdTransactionalProducer, partition_for

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def read_committed(bootstrap: str, topic: str, expect: int, timeout: float = 30) -> list:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, isolation_level="read_committed",
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    found: list = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and len(found) < expect:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                found.extend(records)
        for records in (await consumer.getmany(timeout_ms=500)).values():  # what should not be there shows now
            found.extend(records)
    finally:
        await consumer.stop()
    return found


def producer(bootstrap: str, transactional_id: str) -> RdTransactionalProducer:
    return RdTransactionalProducer(bootstrap, transactional_id, 1, asyncio.Event())


async def test_a_record_the_broker_refuses_aborts_the_whole_transaction(
        kafka_bootstrap, new_topic):
    """librdkafka fails the whole produce request of a partition when one record is too large for the topic:
    the transaction is aborted (none of its records is visible, the good ones included), the error is one the
    lane isolates (not an outage: MSG_SIZE_TOO_LARGE, or the skipped sequence numbers librdkafka's retry of
    the refused batch meets), and a new producer with the same id commits the next one. (The worker refuses
    such a record before its transaction, `_check_sizes`: test_no_record_lost.py's `refused` record.)"""
    small = await new_topic("small", **{"max.message.bytes": "1000"})
    txn = producer(kafka_bootstrap, f"test-{small}")
    await txn.start()
    try:
        with pytest.raises(KafkaError) as failed:
            await txn.transact([Outgoing(small, b"a", b"fine", partition=0),
                                Outgoing(small, b"b", b"y" * 5_000, partition=0),
                                Outgoing(small, b"c", b"fine too", partition=0)])
        assert isinstance(failed.value, MessageSizeTooLargeError | OutOfOrderSequenceNumber), failed.value
        assert not is_transient(failed.value)
        assert txn.needs_replacing and not txn.in_transaction
    finally:
        await txn.stop()
    txn = producer(kafka_bootstrap, f"test-{small}")  # the worker's replacement, with the same id
    await txn.start()
    try:
        written = await txn.transact([Outgoing(small, b"d", b"after", partition=0)])
    finally:
        await txn.stop()
    visible = await read_committed(kafka_bootstrap, small, 1)
    assert [r.value for r in visible] == [b"after"]
    assert written == {(small, 0): visible[0].offset}


async def test_a_producer_whose_id_another_took_over_is_fenced(kafka_bootstrap, new_topic):
    """A second producer with the same transactional id (the partition's next owner) fences the first:
    its next transaction raises `ProducerFenced` (the worker's FENCED outcome) and commits nothing."""
    topic = await new_topic("out")
    first = producer(kafka_bootstrap, f"test-{topic}")
    await first.start()
    await first.transact([Outgoing(topic, b"k", b"before", partition=0)])
    second = producer(kafka_bootstrap, f"test-{topic}")
    try:
        await second.start()  # init_transactions with the same id
        with pytest.raises(ProducerFenced):
            await first.transact([Outgoing(topic, b"k", b"zombie", partition=0)])
        assert first.needs_replacing
        await second.transact([Outgoing(topic, b"k", b"after", partition=0)])
    finally:
        await first.stop()
        await second.stop()
    await first.stop()  # a replaced producer may be stopped again (a revocation after a failed replacement)
    assert [r.value for r in await read_committed(kafka_bootstrap, topic, 2)] == [b"before", b"after"]


async def test_the_written_offsets_and_a_keyed_record_s_partition_are_the_other_clients(kafka_bootstrap, new_topic):
    """A record sent with a key and no partition lands where `partition_for` (the engine's home check, the
    Java client's and aiokafka's murmur2) puts it; the offsets reported are the last written to each partition
    that a record named explicitly (the changelog's, as the store needs them), and only those."""
    topic = await new_topic("keyed", partitions=6)
    placed = await new_topic("placed", partitions=3)
    keys = [f"inst_{n:04d}".encode() for n in range(60)]
    explicit = [Outgoing(placed, key, key, partition=n % 2) for n, key in enumerate(keys[:9])]
    txn = producer(kafka_bootstrap, f"test-{topic}")
    await txn.start()
    try:
        written = await txn.transact([*(Outgoing(topic, key, key) for key in keys), *explicit])
    finally:
        await txn.stop()
    records = await read_committed(kafka_bootstrap, topic, len(keys))
    assert sorted(r.key for r in records) == sorted(keys)
    assert all(r.partition == partition_for(r.key, 6) for r in records)
    last = {}
    for r in await read_committed(kafka_bootstrap, placed, len(explicit)):
        last[(placed, r.partition)] = max(last.get((placed, r.partition), -1), r.offset)
    assert written == last and set(last) == {(placed, 0), (placed, 1)}


async def test_an_aiokafka_producer_with_the_same_id_fences_it_too(kafka_bootstrap, new_topic):
    """The matcher and older engines use aiokafka with the same ids: fencing works across the two clients."""
    topic = await new_topic("out")
    txn = producer(kafka_bootstrap, f"test-{topic}")
    await txn.start()
    rogue = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=f"test-{topic}")
    try:
        await rogue.start()
        with pytest.raises(ProducerFenced):
            await txn.transact([Outgoing(topic, b"k", b"zombie", partition=0)])
    finally:
        await rogue.stop()
        await txn.stop()
    assert await read_committed(kafka_bootstrap, topic, 1, timeout=2) == []
