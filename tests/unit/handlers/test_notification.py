"""Notification handler with fake senders: signatures, idempotency keys, outcomes and side notices."""

from __future__ import annotations

import json

from core.signing import verify_payload
from handlers.notification import DeliveryError, FakeEmailSender, FakeWebhookSender, NotificationHandler, message_id
from handlers.rendering import Renderer, StaticSecretSource
from tests.unit.handlers.fakes import step_request

NOW = 1_760_000_000


def handler(webhooks=None, emails=None, secrets=None):
    return NotificationHandler(webhooks=webhooks or FakeWebhookSender(), emails=emails or FakeEmailSender(),
                               renderer=Renderer(StaticSecretSource(secrets or {}), {"t1": {"hook": "https://t1.example/h"}}),
                               default_signing_key=b"default-key", clock=lambda: NOW)


async def test_a_webhook_is_signed_over_its_exact_body_and_carries_the_idempotency_key():
    webhooks = FakeWebhookSender()
    request = step_request("notification", {"channel": "webhook", "url": "{{tenant.hook}}",
                                            "body": {"event": "trade.settled", "id": "tr_1"}})
    result = await handler(webhooks).handle(request)
    assert result.outcome == "succeeded" and result.command_id == f"result:{request.request_id}"
    sent = webhooks.sent[0]
    assert sent.url == "https://t1.example/h"
    assert json.loads(sent.body) == {"event": "trade.settled", "id": "tr_1"}
    assert sent.headers["Idempotency-Key"] == request.request_id
    assert verify_payload(b"default-key", sent.body, sent.headers["X-Flowline-Signature"], now=NOW) is None
    assert verify_payload(b"other-key", sent.body, sent.headers["X-Flowline-Signature"], now=NOW) is not None


async def test_a_webhook_with_secret_name_is_signed_with_that_template_secret():
    webhooks = FakeWebhookSender()
    request = step_request("notification", {"channel": "webhook", "url": "https://r.example/h",
                                            "secret_name": "partner_hook_key"})
    await handler(webhooks, secrets={"tpl_1": {"partner_hook_key": "per-template"}}).handle(request)
    sent = webhooks.sent[0]
    assert verify_payload(b"per-template", sent.body, sent.headers["X-Flowline-Signature"], now=NOW) is None


async def test_a_missing_signing_secret_fails_without_retry():
    request = step_request("notification", {"channel": "webhook", "url": "https://r.example/h",
                                            "secret_name": "nope"})
    result = await handler().handle(request)
    assert (result.outcome, result.retryable) == ("failed", False)


async def test_a_receiver_error_is_reported_with_its_retryability():
    request = step_request("notification", {"channel": "webhook", "url": "https://r.example/h"})
    for error, retryable in ((DeliveryError("HTTP 503", retryable=True), True),
                             (DeliveryError("HTTP 400", retryable=False), False)):
        result = await handler(FakeWebhookSender(fail_with=error)).handle(request)
        assert (result.outcome, result.retryable) == ("failed", retryable)


async def test_an_email_goes_to_every_recipient_with_the_idempotency_key():
    emails = FakeEmailSender()
    request = step_request("notification", {"channel": "email", "to": ["a@example.com", "b@example.com"],
                                            "subject": "Paid", "text": "Transfer done"})
    result = await handler(emails=emails).handle(request)
    assert result.outcome == "succeeded"
    assert emails.sent[0].to == ("a@example.com", "b@example.com")
    assert emails.sent[0].idempotency_key == request.request_id
    assert message_id(request.request_id) == message_id(request.request_id)


async def test_a_failure_notice_is_delivered_but_reports_no_result():
    webhooks = FakeWebhookSender()
    request = step_request("notification", {"channel": "webhook", "url": "https://r.example/h",
                                            "event": {"type": "step_failed", "step": 2}}, suffix=":failure-notice")
    assert await handler(webhooks).handle(request) is None
    assert json.loads(webhooks.sent[0].body)["event"] == {"type": "step_failed", "step": 2}
