"""The action handler and the payment simulator on the real broker: a payment per idempotency key, once."""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest

from deploy.payment_simulator import PaymentSimulator, read_ledger
from schemas import topics
from tests.integration.engine_harness import EngineWorld
from tests.integration.handlers.support import Handlers, Results, handler_settings
from tests.unit.handlers.fakes import step_request

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture
async def world(kafka_bootstrap):
    async with EngineWorld(kafka_bootstrap, partitions=2) as w:
        yield w


async def transfer(world: EngineWorld, transfer_id: str, amount_minor: int, tenant_id: str = "t1") -> None:
    """The upstream transfer event: how the payment system (the simulator) knows a transfer."""
    await world.send_raw(topics.PAYMENTS_TRANSFERS, json.dumps({
        "event_id": f"evt_{transfer_id}", "transfer_id": transfer_id, "tenant_id": tenant_id,
        "amount_minor": amount_minor, "currency": "USD"}).encode(), key=f"evt_{transfer_id}".encode())


@contextlib.asynccontextmanager
async def simulator(world: EngineWorld, tmp_path, **options):
    sim = PaymentSimulator(bootstrap_servers=world.bootstrap, topic_prefix=world.prefix,
                           ledger=tmp_path / "ledger.jsonl", **options)
    task = asyncio.create_task(sim.run())
    await sim.ready.wait()
    try:
        yield sim
    finally:
        sim.stop()
        await asyncio.wait_for(task, 20)


async def test_a_request_delivered_twice_executes_the_transfer_once_with_the_same_result(world, tmp_path):
    await transfer(world, "tr_9", 12_000)
    async with simulator(world, tmp_path) as sim:
        handlers = Handlers()
        await handlers.start("action", handler_settings(world))
        request = step_request("action", {"action": "execute_transfer", "params": {"transfer_id": "tr_9",
                                                                                    "amount": 120}},
                               instance_id="wfi_pay")
        try:
            async with Results(world) as results:
                for _ in range(2):
                    await world.send_raw(topics.step_topic("action"), world.codec.encode(request), key=b"wfi_pay")
                await world.wait_until(lambda: len(results.items) == 2, message="two results")
        finally:
            await handlers.stop()
        first, second = results.items
        assert first.outcome == second.outcome == "succeeded"
        assert first.output == second.output and first.output["transfer_id"] == "tr_9"
        assert first.command_id == second.command_id == f"result:{request.request_id}"
        assert [e["idempotency_key"] for e in read_ledger(sim.ledger)] == [request.request_id]
        assert (sim.commands_seen, sim.duplicates) == (2, 1)  # each delivery: one command, no lookup first


async def test_a_rejected_payment_is_a_final_failure_and_a_silent_service_a_retryable_one(world, tmp_path):
    await transfer(world, "tr_r", 100)
    async with simulator(world, tmp_path):
        handlers = Handlers()
        await handlers.start("action", handler_settings(world))
        rejected = step_request("action", {"action": "execute_transfer", "params": {
            "transfer_id": "tr_r", "simulate_failure": "insufficient_funds"}}, instance_id="wfi_r")
        try:
            async with Results(world) as results:
                await world.send_raw(topics.step_topic("action"), world.codec.encode(rejected), key=b"wfi_r")
                result = await results.wait_for(rejected.request_id)
        finally:
            await handlers.stop()
    assert (result.outcome, result.retryable) == ("failed", False)
    assert "insufficient_funds" in result.error
    handlers = Handlers()  # the simulator is gone now: nobody answers
    await handlers.start("action", handler_settings(world))
    silent = step_request("action", {"action": "simulate_transfer", "params": {}, "timeout_seconds": 1},
                          instance_id="wfi_s")
    try:
        async with Results(world) as results:
            await world.send_raw(topics.step_topic("action"), world.codec.encode(silent), key=b"wfi_s")
            result = await results.wait_for(silent.request_id)
    finally:
        await handlers.stop()
    assert (result.outcome, result.retryable) == ("failed", True)


async def test_the_payment_system_pays_its_own_record_once_whatever_the_instances_say(world, tmp_path):
    """Issue 10.3/10.4 on the broker: a made-up amount pays nothing, a second instance for the same transfer
    fails with the first instance's name, and the simulator learnt the transfer after it started."""
    async with simulator(world, tmp_path) as sim:
        await transfer(world, "tr_REAL_5M_TRANSFER", 500_000_000)  # 5,000,000.00 USD, sent after start-up
        handlers = Handlers()
        await handlers.start("action", handler_settings(world))
        pay = {"action": "execute_transfer", "params": {"transfer_id": "tr_REAL_5M_TRANSFER"}}
        lie = step_request("action", pay, instance_id="wfi_lie",
                           trigger={"id": "tr_REAL_5M_TRANSFER", "amount": 1})
        first = step_request("action", pay, instance_id="wfi_first",
                             trigger={"id": "tr_REAL_5M_TRANSFER", "amount": 5_000_000})
        second = step_request("action", pay, instance_id="wfi_second",
                              trigger={"id": "tr_REAL_5M_TRANSFER", "amount": 5_000_000})
        try:
            async with Results(world) as results:
                outcomes = []
                for request in (lie, first, second):
                    await world.send_raw(topics.step_topic("action"), world.codec.encode(request),
                                         key=request.instance_id.encode())
                    outcomes.append(await results.wait_for(request.request_id))
        finally:
            await handlers.stop()
    assert [(r.outcome, r.retryable) for r in outcomes] == [("failed", False), ("succeeded", True), ("failed", False)]
    assert "5000000" in outcomes[0].error and "nothing was paid" in outcomes[0].error
    assert "already executed by instance wfi_first" in outcomes[2].error
    executed = [e for e in read_ledger(sim.ledger) if e["status"] == "succeeded"]
    assert [(e["idempotency_key"], e["params"]["amount"]) for e in executed] == [(first.request_id, 5_000_000)]
