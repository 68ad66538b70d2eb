"""The approval handler with the PostgreSQL directory, a local SMTP server and a local agent webhook."""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg
import pytest

from core.signing import verify_payload
from schemas import topics
from tests.integration.engine_harness import EngineWorld
from tests.integration.handlers.support import Handlers, Receiver, handler_settings, smtp_server
from tests.unit.handlers.fakes import step_request

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture
async def world(kafka_bootstrap):
    async with EngineWorld(kafka_bootstrap, partitions=2) as w:
        yield w


async def test_role_approvers_of_the_tenant_get_emails_and_signed_webhooks_once(world, database_url):
    tenant = f"t_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(database_url)
    with smtp_server() as (smtp_port, mailbox):
        async with Receiver() as agent_hook:
            agent_hook.on("/agent", 200)
            await conn.executemany(
                "INSERT INTO principals (id, tenant_id, kind, display_name, email, webhook_url, roles) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7)",
                [(f"{tenant}_cfo", tenant, "human", "Chief", "cfo@example.com", None, ["cfo"]),
                 (f"{tenant}_agent", tenant, "agent", "Treasury bot", None, f"{agent_hook.url}/agent", ["cfo"]),
                 (f"{tenant}_mgr", tenant, "human", "Manager", "mgr@example.com", None, ["finance_manager"])])
            handlers = Handlers()
            await handlers.start("approval", handler_settings(world, database_url, smtp_port=smtp_port,
                                                              webhook_signing_key=b"approvals-key"))
            request = step_request("approval", {"approvers": {"type": "role", "value": "cfo"}, "level": "SINGLE",
                                                "required": 1, "deadline": 0, "escalation": 0},
                                   tenant_id=tenant, instance_id=f"wfi_{tenant}")
            try:
                for _ in range(2):  # a redelivery must not notify anyone twice
                    await world.send_raw(topics.step_topic("approval"), world.codec.encode(request),
                                         key=request.instance_id.encode())
                await world.wait_until(lambda: len(mailbox.messages) == 1 and len(agent_hook.seen) == 1,
                                       message="one email and one webhook")
                rows = []
                for _ in range(100):
                    rows = await conn.fetch("SELECT principal_id, channel, status, attempts FROM approval_notifications"
                                            " WHERE request_id = $1 ORDER BY principal_id", request.request_id)
                    if len(rows) == 2:
                        break
                    await asyncio.sleep(0.05)
            finally:
                await handlers.stop()
                await conn.close()
            assert [(r["principal_id"], r["channel"], r["status"]) for r in rows] == [
                (f"{tenant}_agent", "webhook", "delivered"), (f"{tenant}_cfo", "email", "delivered")]
            assert len(mailbox.messages) == 1 and len(agent_hook.seen) == 1
            assert mailbox.messages[0]["To"] == "cfo@example.com"
            call = agent_hook.seen[0]
            assert verify_payload(b"approvals-key", call.body, call.headers["X-Flowline-Signature"],
                                  now=int(time.time())) is None
