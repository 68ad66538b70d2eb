"""External handler with a fake transport: what it sends, what it reports, how it fails."""

from __future__ import annotations

import json

from core.signing import callback_token
from handlers.external import ExternalHandler
from handlers.http import BodyTooLarge, ConnectionFailed, RequestTimeout
from handlers.rendering import Renderer, StaticSecretSource
from tests.unit.handlers.fakes import FakeTransport, client, step_request

SECRETS = {"tpl_1": {"erp_api_key": "k-123"}}


def handler(transport: FakeTransport) -> ExternalHandler:
    return ExternalHandler(http=client(transport), renderer=Renderer(StaticSecretSource(SECRETS)),
                           callback_key=b"cb-key", public_url="https://flowline.example")


async def test_a_sync_call_injects_secrets_and_reports_status_headers_and_parsed_body():
    transport = FakeTransport()
    transport.route("https://erp.example/po/7?expand=lines", 200, b'{"total_amount": 900, "status": "open"}')
    request = step_request("external", {"url": "https://erp.example/po/7", "method": "GET",
                                        "query": {"expand": "lines"},
                                        "headers": {"Authorization": "Bearer {{secrets.erp_api_key}}"}})
    result = await handler(transport).handle(request)
    assert result.outcome == "succeeded"
    assert result.output["status"] == 200
    assert result.output["body"] == {"total_amount": 900, "status": "open"}
    sent = transport.sent[0]
    assert sent.headers["Authorization"] == "Bearer k-123"
    assert sent.headers["Idempotency-Key"] == request.request_id
    assert "k-123" not in json.dumps(result.output)


async def test_an_error_status_is_still_a_response_for_the_core_to_judge():
    transport = FakeTransport()
    transport.route("https://erp.example/x", 503, b"down for maintenance", {"content-type": "text/plain"})
    result = await handler(transport).handle(step_request("external", {"url": "https://erp.example/x"}))
    assert result.outcome == "succeeded"
    assert result.output["status"] == 503 and result.output["body"] == "down for maintenance"


async def test_a_secret_echoed_by_the_partner_is_redacted_from_the_result():
    transport = FakeTransport()
    transport.route("https://echo.example/", 200, b'{"you_sent": "Bearer k-123"}')
    request = step_request("external", {"url": "https://echo.example/",
                                        "headers": {"Authorization": "Bearer {{secrets.erp_api_key}}"}})
    result = await handler(transport).handle(request)
    assert result.output["body"] == {"you_sent": "Bearer [redacted]"}


async def test_timeouts_and_connection_errors_are_retryable_and_an_oversized_body_is_not():
    for error, retryable in ((RequestTimeout("slow"), True), (ConnectionFailed("refused"), True),
                             (BodyTooLarge("big"), False)):
        transport = FakeTransport({"https://erp.example/x": error})
        result = await handler(transport).handle(step_request("external", {"url": "https://erp.example/x"}))
        assert (result.outcome, result.retryable) == ("failed", retryable)


async def test_a_missing_secret_fails_without_calling_anyone():
    transport = FakeTransport()
    request = step_request("external", {"url": "https://erp.example/x", "headers": {"X": "{{secrets.nope}}"}})
    result = await handler(transport).handle(request)
    assert (result.outcome, result.retryable) == ("failed", False)
    assert transport.sent == []


async def test_an_async_call_carries_the_callback_url_and_the_per_attempt_token():
    transport = FakeTransport()
    transport.route("https://compliance.example/reviews", 202, b'{"review_id": "r1"}')
    request = step_request("external", {"mode": "async", "url": "https://compliance.example/reviews",
                                        "method": "POST",
                                        "body": {"callback_url": "{{callback.url}}", "token": "{{callback.token}}"}},
                           step=3, attempt=2)
    result = await handler(transport).handle(request)
    assert result.outcome == "accepted"
    url = "https://flowline.example/v1/workflows/instances/wfi_1/steps/3/complete-external"
    token = callback_token(b"cb-key", "wfi_1", 3, 2)
    sent = transport.sent[0]
    assert sent.headers["X-Flowline-Callback-Url"] == url
    assert sent.headers["X-Flowline-Callback-Token"] == token
    assert json.loads(sent.body) == {"callback_url": url, "token": token}
    assert token not in json.dumps(result.output)
