"""The external handler against the real broker, a real local HTTP server and PostgreSQL secrets."""

from __future__ import annotations

import json
import uuid

import asyncpg
import pytest

from handlers.settings import HandlerSettings
from schemas import topics
from schemas.secrets import SecretBox, store_secret
from tests.integration.engine_harness import EngineWorld
from tests.integration.handlers.support import Handlers, Receiver, Results, handler_settings
from tests.unit.handlers.fakes import step_request

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture
async def world(kafka_bootstrap):
    async with EngineWorld(kafka_bootstrap, partitions=2) as w:
        yield w


@pytest.fixture
async def erp():
    async with Receiver() as receiver:
        yield receiver


async def run_external(world: EngineWorld, settings: HandlerSettings, *requests):
    handlers = Handlers()
    await handlers.start("external", settings)
    try:
        async with Results(world) as results:
            for request in requests:
                await world.send_raw(topics.step_topic("external"), world.codec.encode(request),
                                     key=request.instance_id.encode())
            return [await results.wait_for(r.request_id) for r in requests]
    finally:
        await handlers.stop()


async def test_a_sync_call_gets_its_secret_from_postgres_and_reports_the_response(world, erp, database_url):
    template_id = f"tpl_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(database_url)
    try:
        await store_secret(conn, SecretBox.from_env(), template_id, "erp_api_key", "erp-s3cret")
    finally:
        await conn.close()
    erp.on("/api/purchase-orders/PO-7", 200, {"total_amount": 900, "status": "open"})
    request = step_request("external", {
        "url": f"{erp.url}/api/purchase-orders/PO-7", "method": "GET", "timeout_seconds": 5,
        "headers": {"Authorization": "Bearer {{secrets.erp_api_key}}"}}, template_id=template_id)
    [result] = await run_external(world, handler_settings(world, database_url), request)
    assert result.outcome == "succeeded"
    assert result.output["status"] == 200 and result.output["body"] == {"total_amount": 900, "status": "open"}
    call = erp.calls("/api/purchase-orders/PO-7")[0]
    assert call.headers["Authorization"] == "Bearer erp-s3cret"
    assert call.headers["Idempotency-Key"] == request.request_id
    assert "erp-s3cret" not in json.dumps(result.output)


async def test_timeouts_blocked_addresses_and_oversized_bodies_fail_with_the_right_retryability(world, erp):
    erp.on("/slow", 200, {}, delay=3)
    erp.on("/huge", 200, text="x" * (300 * 1024), headers={"Content-Type": "text/plain"})
    erp.on("/to-metadata", 302, headers={"Location": "http://169.254.169.254/latest/meta-data/"})
    slow = step_request("external", {"url": f"{erp.url}/slow", "timeout_seconds": 0.5}, instance_id="wfi_slow")
    huge = step_request("external", {"url": f"{erp.url}/huge"}, instance_id="wfi_huge")
    redirect = step_request("external", {"url": f"{erp.url}/to-metadata"}, instance_id="wfi_redirect")
    results = await run_external(world, handler_settings(world), slow, huge, redirect)
    assert [(r.outcome, r.retryable) for r in results] == [("failed", True), ("failed", False), ("failed", False)]
    assert "0.5 s" in results[0].error
    assert "256 KiB" in results[1].error
    assert "169.254.169.254" in results[2].error


async def test_loopback_is_refused_unless_the_operator_allows_it(world, erp):
    erp.on("/internal", 200, {"secret": "data"})
    request = step_request("external", {"url": f"{erp.url}/internal"})
    [result] = await run_external(world, handler_settings(world, allow_private_networks=()), request)
    assert (result.outcome, result.retryable) == ("failed", False)
    assert "loopback" in result.error
    assert erp.calls("/internal") == []
