"""The notification handler against the real broker, a local webhook receiver and a local SMTP server."""

from __future__ import annotations

import json
import time

import pytest

from core.signing import verify_payload
from schemas import topics
from tests.integration.engine_harness import EngineWorld
from tests.integration.handlers.support import Handlers, Receiver, Results, handler_settings, smtp_server
from tests.unit.handlers.fakes import step_request

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture
async def world(kafka_bootstrap):
    async with EngineWorld(kafka_bootstrap, partitions=2) as w:
        yield w


async def test_a_webhook_arrives_signed_with_its_idempotency_key_and_an_email_reaches_the_mail_server(world):
    with smtp_server() as (smtp_port, mailbox):
        async with Receiver() as receiver:
            receiver.on("/hooks", 204)
            settings = handler_settings(world, webhook_signing_key=b"tenant-hook-key", smtp_port=smtp_port,
                                        smtp_from="flowline@example.com")
            handlers = Handlers()
            await handlers.start("notification", settings)
            webhook = step_request("notification", {"channel": "webhook", "url": f"{receiver.url}/hooks",
                                                    "body": {"event": "transfer.executed", "id": "tr_1"}},
                                   instance_id="wfi_hook")
            mail = step_request("notification", {"channel": "email", "to": "cfo@example.com",
                                                 "subject": "Transfer executed", "text": "tr_1 is paid"},
                                instance_id="wfi_mail")
            try:
                async with Results(world) as results:
                    for request in (webhook, mail):
                        await world.send_raw(topics.step_topic("notification"), world.codec.encode(request),
                                             key=request.instance_id.encode())
                    hook_result = await results.wait_for(webhook.request_id)
                    mail_result = await results.wait_for(mail.request_id)
            finally:
                await handlers.stop()
            assert hook_result.outcome == "succeeded" and hook_result.output == {"channel": "webhook", "status": 204}
            call = receiver.calls("/hooks")[0]
            assert json.loads(call.body) == {"event": "transfer.executed", "id": "tr_1"}
            assert call.headers["Idempotency-Key"] == webhook.request_id
            assert verify_payload(b"tenant-hook-key", call.body, call.headers["X-Flowline-Signature"],
                                  now=int(time.time())) is None
            assert mail_result.outcome == "succeeded"
            [message] = mailbox.messages
            assert message["Subject"] == "Transfer executed" and message["To"] == "cfo@example.com"
            assert message["X-Flowline-Idempotency-Key"] == mail.request_id
            assert "tr_1 is paid" in message.get_payload()


async def test_an_unreachable_mail_server_and_a_failing_receiver_are_retryable_failures(world):
    async with Receiver() as receiver:
        receiver.on("/hooks", 503)
        handlers = Handlers()
        await handlers.start("notification", handler_settings(world, smtp_port=1))  # nothing listens on port 1
        webhook = step_request("notification", {"channel": "webhook", "url": f"{receiver.url}/hooks"},
                               instance_id="wfi_503")
        mail = step_request("notification", {"channel": "email", "to": "a@example.com"}, instance_id="wfi_nomail")
        try:
            async with Results(world) as results:
                for request in (webhook, mail):
                    await world.send_raw(topics.step_topic("notification"), world.codec.encode(request),
                                         key=request.instance_id.encode())
                outcomes = [await results.wait_for(r.request_id) for r in (webhook, mail)]
        finally:
            await handlers.stop()
        assert [(r.outcome, r.retryable) for r in outcomes] == [("failed", True), ("failed", True)]
