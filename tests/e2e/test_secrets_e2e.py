"""Secrets suite, end to end: a requester, a partner's response and the template author all write
`{{secrets.erp_key}}`; only the author's reaches the partner, and afterwards the secret's value is in no log,
no event on workflow.events, nothing in the DLQ and no row of the read model (issue 10.5).

Engine, projector and gateway from `running_world`, the external handler through its composition root, the
partner a local HTTP server; the template, its secret and the trigger go through the API.
"""

from __future__ import annotations

import json
import logging

import asyncpg
import pytest

from tests.integration.gateway.world import running_world
from tests.integration.handlers.support import Handlers, Receiver, handler_settings

pytestmark = pytest.mark.asyncio(loop_scope="session")

SECRET = "sk-live-7d1e2f-never-leak"
ATTACK = "{{secrets.erp_key}}"


async def read_model_text(database_url: str) -> str:
    conn = await asyncpg.connect(database_url)
    try:
        tables = [r["table_name"] for r in await conn.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' "
            "AND table_type = 'BASE TABLE'")]
        rows = []
        for table in tables:
            rows += [r[0] for r in await conn.fetch(f'SELECT t::text FROM "{table}" t')]
        return "\n".join(rows)
    finally:
        await conn.close()


async def test_secrets_referenced_from_untrusted_places_are_never_rendered_or_stored(
        kafka_bootstrap, database_url, caplog):
    caplog.set_level(logging.DEBUG)
    async with running_world(kafka_bootstrap, database_url) as world, Receiver() as erp:
        erp.on("/push", 200, {"note": ATTACK, "ok": True})  # a partner answers with a placeholder of its own
        erp.on("/confirm", 200, {"ok": True})
        handlers = Handlers()
        await handlers.start("external", handler_settings(world.engine, database_url))
        try:
            tenant = await world.new_tenant()
            _, template = await world.call("POST", "/v1/workflows/templates", tenant, json={
                "name": "ERP push", "trigger_type": "manual", "steps": [
                    {"type": "external", "name": "Push", "config": {
                        "url": f"{erp.url}/push", "method": "POST",
                        "headers": {"Authorization": "Bearer {{secrets.erp_key}}"},
                        "body": {"memo": "{{trigger.memo}}", "text": "memo: {{trigger.memo}}"},
                        "extract_fields": {"note": "response.body.note"}}},
                    {"type": "external", "name": "Confirm", "config": {
                        "url": f"{erp.url}/confirm", "method": "POST",
                        "body": {"echo": "{{steps.push.note}}", "memo": "{{trigger.memo}}"}}}]},
                expect=201)
            await world.call("POST", f"/v1/workflows/templates/{template['id']}/secrets", tenant,
                             json={"name": "erp_key", "value": SECRET}, expect=201)
            _, started = await world.call("POST", "/v1/workflows/instances?wait=true", tenant, "requester", json={
                "template_id": template["id"], "trigger_data": {"memo": ATTACK}}, expect=201)
            instance_id = started["id"]
            detail = await world.wait_instance(tenant, instance_id, lambda b: b["status"] == "COMPLETED")
        finally:
            await handlers.stop()
        [push] = erp.calls("/push")
        [confirm] = erp.calls("/confirm")
        assert push.headers["Authorization"] == f"Bearer {SECRET}"  # the author's own reference works
        assert json.loads(push.body) == {"memo": ATTACK, "text": f"memo: {ATTACK}"}  # the requester's is data
        assert json.loads(confirm.body) == {"echo": ATTACK, "memo": ATTACK}  # so is the partner's
        places = {
            "API detail and timeline": json.dumps(detail),
            "workflow.events": repr(world.engine.events[instance_id]),
            "DLQ": repr(world.engine.dlq),
            "read model": await read_model_text(database_url),
            "logs": caplog.text,
        }
        leaks = [where for where, text in places.items() if SECRET in text]
        assert leaks == []
        assert ATTACK in places["workflow.events"]  # the grep looked at the right data
