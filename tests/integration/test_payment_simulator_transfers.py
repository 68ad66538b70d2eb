"""The payment simulator reads the transfers topic in a task of its own (issue 15).

It used to read transfers between commands, while the loop answering commands waits up to a second for the
next one. A transfer left in aiokafka's buffer longer than its prefetch backoff (100 ms) takes its partition
out of the consumer's next fetch, which then holds the other partitions at the broker (5 s once the consumer
is idle, ADR 15); the partition is fetched again only when that fetch returns. So after an idle period the
next transfer on the same partition, and the payment that needed it, waited for the held fetch to expire
(the lead saw a 5.1 s payment hop, one workflow of eight). Here the idle fetch is held 20 s; the lookup of
the second transfer must be answered well before that.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from deploy.payment_simulator import PaymentSimulator
from schemas import topics
from schemas.codec import Codec
from schemas.records import PaymentCommand, PaymentResult

pytestmark = pytest.mark.asyncio(loop_scope="session")

HELD_MS = 20_000  # the simulator's idle fetch wait here (under the consumers' 40 s request timeout)


def transfer(transfer_id: str) -> bytes:
    return json.dumps({"event_id": transfer_id, "transfer_id": transfer_id, "tenant_id": "acme",
                       "amount_minor": 12_300, "currency": "USD"}).encode()


async def test_a_transfer_after_an_idle_period_is_read_at_once_not_after_the_held_fetch(kafka_bootstrap, tmp_path):
    prefix = f"t.simtransfers.{uuid.uuid4().hex[:8]}."
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(prefix + t, 2, 1) for t in
                                   (topics.PAYMENTS_COMMANDS, topics.PAYMENTS_RESULTS, topics.PAYMENTS_TRANSFERS)])
    finally:
        await admin.close()
    codec = Codec.from_env()
    sim = PaymentSimulator(bootstrap_servers=kafka_bootstrap, topic_prefix=prefix, ledger=tmp_path / "ledger.jsonl",
                           idle_fetch_ms=HELD_MS, idle_after=0.5)
    running = asyncio.create_task(sim.run())
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True)
    results = AIOKafkaConsumer(prefix + topics.PAYMENTS_RESULTS, bootstrap_servers=kafka_bootstrap, group_id=None,
                               auto_offset_reset="earliest")
    await producer.start()
    await results.start()
    try:
        await asyncio.wait_for(sim.ready.wait(), 60)
        await asyncio.sleep(3)  # idle: every consumer of the simulator now holds its fetches HELD_MS
        first, second = f"tr_{uuid.uuid4().hex[:8]}", f"tr_{uuid.uuid4().hex[:8]}"
        await producer.send_and_wait(prefix + topics.PAYMENTS_TRANSFERS, transfer(first), partition=0)
        deadline = time.monotonic() + HELD_MS / 1000
        while sim.book.record(first, "acme") is None:
            assert time.monotonic() < deadline, "the first transfer was never read"
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # the consumer's next fetch is out (with partition 0 in it, or without)
        await producer.send_and_wait(prefix + topics.PAYMENTS_TRANSFERS, transfer(second), partition=0)
        key = f"lookup:{uuid.uuid4().hex[:8]}"
        command = PaymentCommand(idempotency_key=key, action="lookup_transfer", tenant_id="acme",
                                 params={"transfer_id": second}, requested_at=int(time.time() * 1000))
        sent = time.monotonic()
        await producer.send_and_wait(prefix + topics.PAYMENTS_COMMANDS, codec.encode(command), key=key.encode())
        answer = None
        while answer is None and time.monotonic() - sent < HELD_MS / 1000 + 10:
            for records in (await results.getmany(timeout_ms=500)).values():
                for record in records:
                    result = codec.decode(record.value, PaymentResult)
                    if result.idempotency_key == key:
                        answer, waited = result, time.monotonic() - sent
        assert answer is not None, "the lookup was never answered"
        assert answer.status == "succeeded" and answer.output["transfer_id"] == second
        assert waited < HELD_MS / 2000, f"answered after {waited:.1f} s: the transfer waited for the held fetch"
    finally:
        sim.stop()
        await asyncio.wait_for(running, 30)
        await results.stop()
        await producer.stop()
