"""Action handler with a fake payment gateway: adapters, idempotency keys and outcomes."""

from __future__ import annotations

from handlers.action import ActionHandler, FakePaymentGateway, default_adapters
from handlers.rendering import Renderer, StaticSecretSource
from tests.unit.handlers.fakes import FakeTransport, client, step_request


def handler(gateway: FakePaymentGateway, transport: FakeTransport | None = None) -> ActionHandler:
    return ActionHandler(default_adapters(gateway, client(transport or FakeTransport())),
                         Renderer(StaticSecretSource({"tpl_1": {"token": "t0k"}})))


def payments() -> FakePaymentGateway:
    gateway = FakePaymentGateway()
    gateway.book.learn("tr_1", tenant_id="t1", amount=120, currency="USD")
    return gateway


async def test_execute_transfer_sends_the_request_id_as_the_payment_idempotency_key():
    gateway = payments()
    request = step_request("action", {"action": "execute_transfer", "params": {"transfer_id": "tr_1"}})
    result = await handler(gateway).handle(request)
    assert result.outcome == "succeeded"
    assert list(gateway.executed) == [request.request_id]
    assert gateway.executed[request.request_id].params == {"transfer_id": "tr_1", "amount": 120, "currency": "USD"}


async def test_a_redelivered_request_executes_the_payment_once_and_reports_the_same_output():
    gateway = payments()
    request = step_request("action", {"action": "execute_transfer", "params": {"transfer_id": "tr_1"}})
    first = await handler(gateway).handle(request)
    second = await handler(gateway).handle(request)
    assert len(gateway.executed) == 1 and gateway.submitted == 2  # one command each time, no lookup first
    assert first.output == second.output and first.command_id == second.command_id


async def test_no_payment_result_in_time_is_a_retryable_failure():
    result = await handler(FakePaymentGateway(silent=True)).handle(
        step_request("action", {"action": "simulate_transfer", "params": {}, "timeout_seconds": 0.1}))
    assert (result.outcome, result.retryable) == ("failed", True)


async def test_an_unknown_action_fails_without_retry():
    result = await handler(FakePaymentGateway()).handle(step_request("action", {"action": "launch_rocket"}))
    assert (result.outcome, result.retryable) == ("failed", False)
    assert "execute_transfer" in result.error


async def test_http_request_calls_the_configured_endpoint_with_the_idempotency_key():
    transport = FakeTransport()
    transport.route("https://ops.example/run", 201, b'{"job": 9}')
    request = step_request("action", {"action": "http_request", "params": {
        "url": "https://ops.example/run", "method": "POST", "body": {"x": 1},
        "headers": {"Authorization": "Bearer {{secrets.token}}"}}})
    result = await handler(FakePaymentGateway(), transport).handle(request)
    assert result.outcome == "succeeded" and result.output["body"] == {"job": 9}
    assert transport.sent[0].headers["Idempotency-Key"] == request.request_id
    assert transport.sent[0].headers["Authorization"] == "Bearer t0k"


async def test_http_request_maps_statuses_to_retryable_and_final_failures():
    transport = FakeTransport()
    transport.route("https://ops.example/busy", 503)
    transport.route("https://ops.example/bad", 422)
    h = handler(FakePaymentGateway(), transport)
    busy = await h.handle(step_request("action", {"action": "http_request", "params": {"url": "https://ops.example/busy"}}))
    bad = await h.handle(step_request("action", {"action": "http_request", "params": {"url": "https://ops.example/bad"}}))
    assert (busy.retryable, bad.retryable) == (True, False)
