"""Issue 15: an idle consumer holds its fetches at the broker long (schemas/consumers.py), and that costs no
latency: the broker answers a held fetch the moment a record arrives, read_committed included (a record
inside a transaction becomes visible with its commit marker, which ends the wait as well).

Each test holds the idle fetch for a minute and expects the record in well under that: if the broker
answered only at the end of the wait, the record would arrive after it."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from schemas.consumers import AT_ONCE, TRAILING, FetchShape, LongPoll, consumer_options

HELD_MS = 60_000  # the idle fetch wait in these tests: a record must not wait for its end


async def _idle_consumer(bootstrap: str, topic: str,
                         shape: FetchShape | None = None) -> tuple[AIOKafkaConsumer, LongPoll]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                isolation_level="read_committed", auto_offset_reset="earliest",
                                request_timeout_ms=HELD_MS + 30_000, **consumer_options(shape=shape or AT_ONCE))
    await consumer.start()
    poll = LongPoll(consumer, idle_ms=HELD_MS, idle_after=0.5, shape=shape or AT_ONCE)
    deadline = time.monotonic() + 30
    while not poll.idle:  # nothing on the topic: it turns idle, and its next fetches are held a minute
        assert time.monotonic() < deadline, "the consumer never turned idle"
        assert not await poll.getmany(timeout_ms=200)
    assert consumer._fetcher._fetch_max_wait_ms == HELD_MS
    assert consumer._fetcher._fetch_min_bytes == 1  # or a held fetch would wait out the minute for its bytes
    await poll.getmany(timeout_ms=1_000)  # a fetch with the idle wait is now held at the broker
    return consumer, poll


async def _first_batch(poll: LongPoll) -> tuple[list, float]:
    began = time.monotonic()
    while time.monotonic() - began < HELD_MS / 1000:
        batches = await poll.getmany(timeout_ms=1_000)
        if batches:
            return [r for rs in batches.values() for r in rs], time.monotonic() - began
    return [], time.monotonic() - began


@pytest.mark.parametrize("shape", [None, TRAILING], ids=["on-path", "trailing"])
async def test_an_idle_consumer_gets_a_plain_record_at_once_and_fetches_busy_again(kafka_bootstrap, new_topic,
                                                                                   shape):
    """Trailing too (ADR 22, the projector's shape): idle, its held fetch is answered at the first byte like
    any other; busy again, its fetch waits at the broker for its bytes or its shape's wait."""
    topic = await new_topic("plain", partitions=3)
    consumer, poll = await _idle_consumer(kafka_bootstrap, topic, shape=shape)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"first after idle", key=b"k")
        records, waited = await _first_batch(poll)
        assert [r.value for r in records] == [b"first after idle"]
        assert waited < HELD_MS / 2000, f"the record waited {waited:.1f} s: the held fetch was not answered"
        assert not poll.idle
        busy = shape or FetchShape(1, poll.busy_ms)
        assert (consumer._fetcher._fetch_min_bytes, consumer._fetcher._fetch_max_wait_ms) == (
            busy.min_bytes, busy.wait_ms)
    finally:
        await producer.stop()
        await consumer.stop()


async def test_an_idle_read_committed_consumer_gets_a_transactional_record_at_its_commit(kafka_bootstrap,
                                                                                        new_topic):
    topic = await new_topic("txn", partitions=3)
    consumer, poll = await _idle_consumer(kafka_bootstrap, topic)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=f"idle-test-{topic}")
    await producer.start()
    try:
        async with producer.transaction():
            await producer.send_and_wait(topic, b"committed after idle", key=b"k")
            await asyncio.sleep(0.5)  # the record is in the log, the fetch must not return it yet
        records, waited = await _first_batch(poll)
        assert [r.value for r in records] == [b"committed after idle"]
        assert waited < HELD_MS / 2000, f"the record waited {waited:.1f} s: the commit did not end the held fetch"
    finally:
        await producer.stop()
        await consumer.stop()


async def test_a_consumer_with_a_paused_partition_never_holds_its_fetches_and_a_resumed_one_is_read_at_once(
        kafka_bootstrap, new_topic):
    """A paused partition (an engine lane with a backlog) is left out of every fetch; were the consumer to
    turn idle meanwhile, the fetch it holds would be of the other partitions only, and the paused one,
    once resumed, would be asked for only when that fetch ends (a minute here, 5 s on the stack). So a
    consumer with a paused partition stays busy however long it has seen no record."""
    topic = await new_topic("paused", partitions=2)
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=None, enable_auto_commit=False,
                                isolation_level="read_committed", auto_offset_reset="earliest",
                                request_timeout_ms=HELD_MS + 30_000, **consumer_options())
    await consumer.start()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        held, other = TopicPartition(topic, 0), TopicPartition(topic, 1)
        consumer.assign([held, other])
        poll = LongPoll(consumer, idle_ms=HELD_MS, idle_after=0.5)
        assert not await poll.getmany(timeout_ms=200)
        consumer.pause(held)
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < 3 * poll.idle_after:  # long past `idle_after`, no record
            assert not await poll.getmany(timeout_ms=200)
        assert not poll.idle, "a consumer with a paused partition turned idle"
        assert consumer._fetcher._fetch_max_wait_ms == poll.busy_ms
        await producer.send_and_wait(topic, b"behind the pause", key=b"k", partition=0)
        consumer.resume(held)
        records, waited = await _first_batch(poll)
        assert [r.value for r in records] == [b"behind the pause"]
        assert waited < HELD_MS / 2000, f"the resumed partition waited {waited:.1f} s for a held fetch"
        deadline = time.monotonic() + 30
        while not poll.idle:  # nothing paused, nothing arriving: now it turns idle
            assert time.monotonic() < deadline, "the consumer never turned idle once nothing was paused"
            assert not await poll.getmany(timeout_ms=200)
    finally:
        await producer.stop()
        await consumer.stop()


async def _batches_of_spaced_records(bootstrap: str, topic: str, shape: FetchShape | None) -> list[int]:
    """Sizes of the batches a busy consumer of `shape` returns for five records sent 100 ms apart."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                isolation_level="read_committed", auto_offset_reset="earliest",
                                **consumer_options(shape=shape or AT_ONCE))
    await consumer.start()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    poll = LongPoll(consumer, idle_after=60, shape=shape or AT_ONCE)  # busy throughout

    async def send() -> None:
        for i in range(5):
            await producer.send_and_wait(topic, b"r%d" % i, key=b"k")
            await asyncio.sleep(0.1)

    sending = asyncio.create_task(send())
    sizes: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while sum(sizes) < 5:
            assert time.monotonic() < deadline, f"only {sum(sizes)} of 5 records came"
            batches = await poll.getmany(timeout_ms=1_000)
            if batches:
                sizes.append(sum(len(rs) for rs in batches.values()))
        await sending
    finally:
        await producer.stop()
        await consumer.stop()
    return sizes


async def test_a_busy_trailing_fetch_is_held_for_its_bytes_and_an_on_path_one_is_answered_at_once(
        kafka_bootstrap, new_topic):
    """Five records sent 100 ms apart (0.4 s in all): a busy consumer whose fetch waits for 64 KiB or
    5 s gets them in one batch; one answered at the first byte (every consumer on a workflow's path)
    gets them as they come."""
    held = await _batches_of_spaced_records(kafka_bootstrap, await new_topic("held", partitions=1),
                                            FetchShape(min_bytes=TRAILING.min_bytes, wait_ms=5_000))
    assert held == [5]
    at_once = await _batches_of_spaced_records(kafka_bootstrap, await new_topic("at-once", partitions=1), None)
    assert len(at_once) > 1
