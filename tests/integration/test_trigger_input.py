"""Trigger events on the real broker: a bad one goes to the DLQ with the reason and the partition flows
(issue 9.3); an event only ever reaches the templates of its own tenant (issue 10.1)."""

from __future__ import annotations

import asyncio
import json

import pytest

from core import events as ev
from core.builtin import builtin_template
from schemas import topics
from tests.integration.engine_harness import EngineWorld
from tests.integration.test_engine import transfer

pytestmark = pytest.mark.asyncio(loop_scope="session")

ANY_TRANSFER = {  # no conditions: every transfer of the tenant starts it
    "name": "Every transfer",
    "trigger_type": "on_transfer",
    "trigger_config": {},
    "steps": [{"type": "condition", "name": "Done", "config": {"expression": "true", "if_true": "complete"}}],
}


def started(world: EngineWorld, template_id: str, event_id: str) -> str:
    return world.event_instance_id(template_id, event_id)


async def test_a_transfer_with_a_non_numeric_amount_is_dead_lettered_and_the_next_one_starts(kafka_bootstrap):
    async with EngineWorld(kafka_bootstrap, partitions=1) as world:
        await world.publish_template("tpl_procurement", builtin_template("procurement_approval"))
        await world.start_engine()
        lots = json.dumps({"event_id": "evt_lots", "tenant_id": "t1", "amount_minor": "lots", "currency": "USD",
                           "metadata": {"type": "procurement"}}).encode()
        await world.send_raw(topics.PAYMENTS_TRANSFERS, lots, key=b"evt_lots")
        await world.send_transfer(transfer("evt_fine", 10_000))
        await world.wait_for_event(started(world, "tpl_procurement", "evt_fine"), ev.InstanceStarted)
        await world.wait_until(lambda: len(world.dlq) == 1, message="the dead letter")
        letter = world.dlq[0]
        assert letter.value == lots and letter.error_type == "invalid_input"
        assert letter.reason == 'amount_minor must be an integer, got "lots"'
        assert started(world, "tpl_procurement", "evt_lots") not in world.events


async def test_an_event_reaches_only_its_own_tenants_templates(kafka_bootstrap):
    async with EngineWorld(kafka_bootstrap, partitions=1) as world:
        await world.publish_template("tpl_acme", ANY_TRANSFER, tenant_id="acme")
        await world.publish_template("tpl_globex", ANY_TRANSFER, tenant_id="globex")
        await world.start_engine()
        for event_id, tenant in (("evt_acme", "acme"), ("evt_globex", "globex"), ("evt_nobody", "")):
            body = {"event_id": event_id, "amount_minor": 1_000_000, "currency": "USD",
                    "metadata": {"employee": "E-1", "iban": "DE00123"}}
            if tenant:
                body["tenant_id"] = tenant
            await world.send_raw(topics.PAYMENTS_TRANSFERS, json.dumps(body).encode(), key=event_id.encode())
        await world.send_raw(topics.PAYMENTS_TRANSFERS, json.dumps({
            "event_id": "evt_domain_nobody", "event_type": "payroll.run", "data": {"n": 1}}).encode())
        acme = await world.wait_for_event(started(world, "tpl_acme", "evt_acme"), ev.InstanceStarted)
        globex = await world.wait_for_event(started(world, "tpl_globex", "evt_globex"), ev.InstanceStarted)
        assert acme.tenant_id == "acme" and globex.tenant_id == "globex"
        await world.wait_until(lambda: len(world.dlq) == 2, message="two dead letters")
        await asyncio.sleep(1.0)  # a wrongly started instance would show up by now
        for template_id in ("tpl_acme", "tpl_globex"):
            assert started(world, template_id, "evt_nobody") not in world.events
        assert started(world, "tpl_acme", "evt_globex") not in world.events
        assert started(world, "tpl_globex", "evt_acme") not in world.events
        assert all("names no tenant_id" in letter.reason for letter in world.dlq)


async def test_a_topic_bound_to_a_tenant_gives_its_events_that_tenant_and_refuses_another(kafka_bootstrap):
    async with EngineWorld(kafka_bootstrap, partitions=1) as world:
        await world.publish_template("tpl_acme", ANY_TRANSFER, tenant_id="acme")
        await world.publish_template("tpl_globex", ANY_TRANSFER, tenant_id="globex")
        await world.start_engine(trigger_topic_tenants={topics.PAYMENTS_TRANSFERS: "acme"})
        await world.send_raw(topics.PAYMENTS_TRANSFERS, json.dumps({
            "event_id": "evt_unnamed", "amount_minor": 100, "currency": "USD"}).encode())
        await world.send_raw(topics.PAYMENTS_TRANSFERS, json.dumps({
            "event_id": "evt_claims_globex", "tenant_id": "globex", "amount_minor": 100, "currency": "USD"}).encode())
        instance = await world.wait_for_event(started(world, "tpl_acme", "evt_unnamed"), ev.InstanceStarted)
        assert instance.tenant_id == "acme" and instance.trigger["tenant_id"] == "acme"
        await world.wait_until(lambda: len(world.dlq) == 1, message="the dead letter")
        assert "bound to tenant 'acme'" in world.dlq[0].reason
        await asyncio.sleep(1.0)
        assert started(world, "tpl_globex", "evt_unnamed") not in world.events
        assert started(world, "tpl_globex", "evt_claims_globex") not in world.events
