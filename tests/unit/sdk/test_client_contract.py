"""The client against the OpenAPI document: every operation has a call, with the document's method and
path, and a body the document's schema accepts; problems map to their exception classes."""

from __future__ import annotations

import inspect
import re

import jsonschema
import pytest

from flowline.client import (
    ApiError,
    AsyncClient,
    BadRequest,
    Client,
    Conflict,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
    Unavailable,
    ValidationFailed,
)
from flowline.client import operations as ops
from flowline.client.errors import problem_error
from gateway.openapi import body_schema, operations

TEMPLATE = {"name": "T", "trigger_type": "manual",
            "steps": [{"type": "wait", "name": "W", "config": {"duration_hours": 1}}]}
NOT_CLIENT_OPERATIONS = {"metrics", "docs",  # Prometheus text and an HTML page, not API results
                         "completeExternalSpecPath"}  # story 29.13's path for partners; complete_external is the call

SAMPLE_CALLS = [
    ops.list_templates("ACTIVE", "c1", 10), ops.get_template("wf_a", 2), ops.create_template(TEMPLATE, "k"),
    ops.update_template("wf_a", TEMPLATE), ops.deactivate_template("wf_a"), ops.validate_template("wf_a", TEMPLATE),
    ops.set_secret("wf_a", "erp_key", "v"), ops.list_secrets("wf_a"),
    ops.start_instance("wf_a", {"amount": 1}, agent_context={"intent": "x"}, wait=True, idempotency_key="k"),
    ops.list_instances(status="ACTIVE", template_id="wf_a", created_after="2026-01-01T00:00:00+00:00",
                       blocked_on_me=True, cursor="c", limit=5),
    ops.get_instance("wfi_1"), ops.approve("wfi_1", 2, "ok", agent_signature="s", wait=True),
    ops.reject("wfi_1", 2, "no"), ops.escalate("wfi_1", 2, {"type": "role", "value": "cfo"}, reason="r",
                                                timeout_hours=2),
    ops.advance("wfi_1"), ops.cancel("wfi_1", "r"), ops.pause("wfi_1", "r"), ops.resume("wfi_1"),
    ops.retry_step("wfi_1", 3), ops.complete_external("wfi_1", 2, "completed", {"x": 1}, token="tok", timestamp=1),
    ops.callback_url("wfi_1", 2), ops.agent_actions("wfi_1"), ops.pending(10),
    ops.request_transition("wfi_1", "approved", "looks fine", wait=True), ops.transitions("wfi_1"),
    ops.instantiate_template("wf_a", {"name": "copy", "roles": {"cfo": "controller"}}), ops.result("wfi_1"),
    ops.get_agent_permissions("agent_1"),
    ops.get_agent_key("agent_1"), ops.agent_access_log("agent_1", conversation_id="c", limit=5),
    ops.security_log(limit=5), ops.list_agents(limit=5),
    ops.set_agent_key("agent_1", "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="),
    ops.set_agent_permissions("agent_1", can_initiate=["wf_a"], can_approve={"wf_a": {"max_amount": 10}}),
    ops.analytics("wf_a"), ops.health(), ops.openapi(), ops.step_types(),
    ops.me(), ops.validate_document(TEMPLATE), ops.my_decisions(5), ops.throughput("wf_a", "hour", 48),
    ops.pipeline("wf_a"),
]


def _path_pattern(template: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$")


def test_every_operation_of_the_document_has_a_call_with_its_method_and_path():
    documented = {op["operationId"]: (method, path) for method, path, op in operations()}
    calls = {call.operation_id: call for call in SAMPLE_CALLS}
    assert set(calls) == set(documented) - NOT_CLIENT_OPERATIONS
    for operation_id, call in calls.items():
        method, path = documented[operation_id]
        assert call.method == method, operation_id
        assert _path_pattern(path).match(call.path), (operation_id, call.path, path)


@pytest.mark.parametrize("call", [c for c in SAMPLE_CALLS if c.body is not None], ids=lambda c: c.operation_id)
def test_every_body_the_client_sends_is_valid_for_the_document(call):
    import json

    operation = next(op for _m, _p, op in operations() if op["operationId"] == call.operation_id)
    schema = body_schema(operation)
    assert schema is not None
    jsonschema.validate(json.loads(call.body), schema)


def test_complete_external_signs_exactly_the_body_it_sends():
    from core.signing import verify_payload

    call = ops.complete_external("wfi_1", 2, "completed", {"risk": 0.1}, token="tok", timestamp=1000)
    assert verify_payload(b"tok", call.body, call.headers["X-Flowline-Signature"], 1000) is None
    assert verify_payload(b"other", call.body, call.headers["X-Flowline-Signature"], 1000) is not None


def test_path_segments_are_escaped():
    assert ops.get_instance("a/b?c").path == "/v1/workflows/instances/a%2Fb%3Fc"


@pytest.mark.parametrize(("status", "cls"), [(400, BadRequest), (401, Unauthorized), (403, Forbidden),
                                             (404, NotFound), (409, Conflict), (413, PayloadTooLarge),
                                             (422, ValidationFailed), (503, Unavailable), (500, ApiError)])
def test_each_status_raises_its_exception(status, cls):
    error = problem_error(status, {"title": "t", "detail": "d", "status": status})
    assert type(error) is cls and error.status == status and error.detail == "d"


def test_validation_failed_carries_every_pointer():
    error = problem_error(422, {"title": "Invalid template", "detail": "2 problems", "errors": [
        {"pointer": "/steps/0/config/approvers", "message": "required"},
        {"pointer": "/steps/1/config/if_true", "message": "no step 9"}]})
    assert [(e.pointer, e.message) for e in error.errors] == [("/steps/0/config/approvers", "required"),
                                                              ("/steps/1/config/if_true", "no step 9")]


def test_unavailable_reads_retry_after():
    assert problem_error(503, {"detail": "broker"}, headers={"Retry-After": "7"}).retry_after == 7.0
    assert problem_error(503, {"detail": "broker"}).retry_after is None


def test_a_body_that_is_not_a_problem_still_raises_with_its_text():
    error = problem_error(502, "<html>bad gateway</html>")
    assert type(error) is ApiError and "bad gateway" in error.detail


def test_url_and_token_come_from_arguments_then_the_environment(monkeypatch):
    monkeypatch.setenv("FLOWLINE_URL", "http://flowline.internal:8700/")
    monkeypatch.setenv("FLOWLINE_TOKEN", "fl_env")
    assert (AsyncClient().base_url, AsyncClient().token) == ("http://flowline.internal:8700", "fl_env")
    assert (AsyncClient("http://x:1", "fl_arg").base_url, AsyncClient("http://x:1", "fl_arg").token) == (
        "http://x:1", "fl_arg")
    monkeypatch.delenv("FLOWLINE_URL")
    monkeypatch.delenv("FLOWLINE_TOKEN")
    assert (AsyncClient().base_url, AsyncClient().token) == ("http://127.0.0.1:8700", None)


def test_the_sync_client_has_every_method_of_the_async_one_with_the_same_parameters():
    public = {n: m for n, m in inspect.getmembers(AsyncClient, inspect.isfunction) if not n.startswith("_")}
    for name, method in public.items():
        assert hasattr(Client, name), name
        ours = list(inspect.signature(getattr(Client, name)).parameters)
        assert ours == list(inspect.signature(method).parameters), name


async def test_the_blocking_client_refuses_to_run_inside_an_event_loop():
    from flowline.client import FlowlineError

    client = Client("http://127.0.0.1:9", "t")
    try:
        with pytest.raises(FlowlineError, match="AsyncClient"):
            client.get_instance("wfi_1")
    finally:
        await client._async.close()
        client._loop.close()
