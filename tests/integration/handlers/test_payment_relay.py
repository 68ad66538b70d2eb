"""The payment results relay on the real broker (docs/adr/0023): each answer to an engine's payment order
reaches its instance as a `RecordPaymentResult`, keyed by instance, at least once, and a restart resumes
where the group's committed offsets say."""

from __future__ import annotations

import contextlib

import pytest

from core.commands import RecordPaymentResult
from handlers.payment_relay import PaymentResultRelay, RelayTopics
from schemas import topics
from schemas.records import PaymentResult
from tests.integration.engine_harness import EngineWorld
from tests.integration.handlers.support import Results

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture
async def world(kafka_bootstrap):
    async with EngineWorld(kafka_bootstrap, partitions=2) as w:
        yield w


@contextlib.asynccontextmanager
async def relay(world: EngineWorld):
    running = PaymentResultRelay(bootstrap_servers=world.bootstrap, topics=RelayTopics(
        results=world.topic(topics.PAYMENTS_RESULTS), commands=world.topic(topics.WORKFLOW_STEP_RESULTS),
        group_id=world.topic("flowline-payment-relay")), codec=world.codec)
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


async def answer(world: EngineWorld, key: str, status: str = "succeeded", **fields) -> None:
    result = PaymentResult(idempotency_key=key, status=status, completed_at=1, **fields)
    await world.send_raw(topics.PAYMENTS_RESULTS, world.codec.encode(result), key=key.encode())


async def test_answers_reach_their_instances_and_a_restart_resumes_after_what_was_relayed(world):
    async with Results(world) as results:
        async with relay(world) as first:
            await answer(world, "wfi_a:4:v1", output={"payment_id": "p_a"})
            await answer(world, "lookup:wfi_b:1:1:9f8e", output={"transfer_id": "tr"})  # the handler's own
            await world.send_raw(topics.PAYMENTS_RESULTS, b"not a record", key=b"junk")
            await answer(world, "wfi_c:2:v3", "failed", error="unknown transfer")
            await world.wait_until(lambda: first.relayed == 2, message="two answers relayed")
            await world.wait_until(lambda: not first.uncommitted, message="their offsets committed (idle)")
        await answer(world, "wfi_d:4:v1")  # while no relay runs
        async with relay(world) as second:
            await world.wait_until(lambda: len(results.items) >= 3, message="the answer given while down")
            await world.wait_until(lambda: second.relayed >= 1, message="the restarted relay's count")
        by_instance = {c.instance_id: (c, key) for c, key in zip(results.items, results.keys, strict=True)}
        assert sorted(by_instance) == ["wfi_a", "wfi_c", "wfi_d"]  # each once: the restart resumed after wfi_c
        a, key = by_instance["wfi_a"]
        assert isinstance(a, RecordPaymentResult) and key == b"wfi_a"  # keyed by instance: its engine partition
        assert (a.step, a.operation_key, a.status, a.output) == (4, "wfi_a:4:v1", "succeeded", {"payment_id": "p_a"})
        c, _ = by_instance["wfi_c"]
        assert (c.step, c.status, c.error) == (2, "failed", "unknown transfer")
