"""Issue 9.2 through the real API: a template created with `POST /v1/workflows/templates` (201 ACTIVE)
matches an event produced right after the answer; after `DELETE` (200 PAUSED) an event produced right
after the answer starts nothing (docs/adr/0007). `FLOWLINE_API_RACES` sets the count (CI: 30)."""

from __future__ import annotations

import json
import os

import pytest

from core import events as ev
from schemas import topics
from tests.integration.gateway.world import running_world

pytestmark = pytest.mark.asyncio(loop_scope="session")

RACES = int(os.environ.get("FLOWLINE_API_RACES", "30"))
T = "/v1/workflows/templates"


def template(n: int) -> dict:
    return {"name": f"API race {n}", "trigger_type": "on_transfer",
            "trigger_config": {"conditions": [{"field": "metadata.race", "op": "eq", "value": f"r{n}"}]},
            "steps": [{"type": "condition", "name": "Done", "config": {"expression": "true", "if_true": "complete"}}]}


async def test_the_api_answer_is_the_moment_a_template_starts_and_stops_matching(kafka_bootstrap, database_url):
    async with running_world(kafka_bootstrap, database_url) as world:
        tenant = await world.new_tenant()
        engine = world.engine

        async def send(event_id: str, race: str) -> None:
            await engine.send_raw(topics.PAYMENTS_TRANSFERS, json.dumps({
                "event_id": event_id, "tenant_id": tenant.id, "amount_minor": 100, "currency": "USD",
                "metadata": {"race": race}}).encode(), key=b"race")

        missed, created = [], []
        for n in range(RACES):
            _, body = await world.call("POST", T, tenant, json=template(n), expect=201)
            assert body["status"] == "ACTIVE"
            created.append(body["id"])
            await send(f"evt_on_{n}", f"r{n}")
            instance_id = engine.event_instance_id(body["id"], f"evt_on_{n}", key="race")
            try:
                await engine.wait_for_event(instance_id, ev.InstanceStarted, timeout=10)
            except AssertionError:
                missed.append(n)
            await world.call("DELETE", f"{T}/{body['id']}", tenant, expect=200)
            await send(f"evt_off_{n}", f"r{n}")
        _, last = await world.call("POST", T, tenant, json=template(-1), expect=201)
        await send("evt_last", "r-1")
        await engine.wait_for_event(engine.event_instance_id(last["id"], "evt_last", key="race"),
                                    ev.InstanceStarted, timeout=60)
        wrongly = [n for n, template_id in enumerate(created)
                   if engine.event_instance_id(template_id, f"evt_off_{n}", key="race") in engine.events]
        assert not missed, f"{len(missed)} of {RACES} templates missed the event sent right after the 201"
        assert not wrongly, f"{len(wrongly)} of {RACES} deactivated templates still started an instance"
