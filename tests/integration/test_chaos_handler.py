"""Kill the action handler (`kill -9`) between the payment and its result, with a load running (issue 9).

The engine orders each payment itself (docs/adr/0023); the action handler's process relays the payment
service's answers to their instances. The payment simulator answers each payment after a delay, so a
handler SIGKILLed while payments are in flight is down when their answers come (the ledger has them, no
instance has them yet); the restarted relay takes the answers from its group's last committed offset, and
copies of answers it had relayed but not committed are dropped by the engine (same command id). Every
workflow ends once, every payment is in the ledger once, and every completed workflow's payment is there.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.integration.chaos import PaymentLoad, scaled, sigkill
from tests.integration.engine_harness import EngineWorld

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_payments_execute_once_when_the_action_handler_dies_between_payment_and_result(
        kafka_bootstrap, database_url, tmp_path):
    count, kills = scaled(60, 400), scaled(2, 6)
    async with EngineWorld(kafka_bootstrap, partitions=3) as world, \
            PaymentLoad(world, database_url, tmp_path / "ledger.jsonl", delay_ms=1500) as load:
        step = count // (kills + 1)
        sender = asyncio.create_task(load.run(count))
        in_flight_at_kill: list[int] = []
        for k in range(1, kills + 1):
            await world.wait_until(lambda k=k: len(load.ids) >= k * step, timeout=180,
                                   message=f"{k * step} workflows sent")
            # wait until some payment has been executed but not yet answered (the 1.5 s delay)
            executed = len(load.ledger())
            await world.wait_until(lambda executed=executed: len(load.ledger()) > executed, timeout=60,
                                   message="a payment executed")
            in_flight_at_kill.append(load.simulator.commands_seen - load.simulator.answered)
            sigkill(load.handler)
            await asyncio.sleep(1)
            load.restart_handler()
        await sender
        await load.wait_finished(timeout=300)
        print(f"{count} workflows, {kills} handler kills; unanswered payment commands at each kill: "
              f"{in_flight_at_kill}; answered again from the ledger: {load.simulator.duplicates}")
        assert await load.violations() == []
        assert len(load.ledger()) == len(load.completed()) == count
        # answers given while the relay was dead: relayed by its restart, none lost
        assert any(in_flight_at_kill), f"no payment was in flight at any kill: {in_flight_at_kill}"
