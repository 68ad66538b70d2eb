"""Secrets suite: `{{secrets.*}}` written anywhere a template author did not write it is never rendered.

Untrusted places: the trigger (a requester's data), a step's result (a partner's response), an async
callback's body, an agent's reasoning. Each travels through the core's pass (`Recorder.render`) into a step
request and then through the handler's pass (`handlers.rendering.Renderer`), as on the stack; the secret
value must not come out. The author's own `{{secrets.*}}` still works in the same request.
"""

from __future__ import annotations

import json

import pytest

from core.expressions import render
from handlers.rendering import HANDLER_ROOTS, Renderer, StaticSecretSource
from tests.unit.harness import Harness, agent, human, workflow

SECRET = "s3cr3t-erp-key-value"
ATTACKS = ["{{secrets.erp_key}}", "{{ secrets.erp_key }}", "x {{secrets.erp_key}} y", "{{secrets.erp_key}",
           "}}{{secrets.erp_key}}{{", {"nested": ["{{secrets.erp_key}}"]}]
# The author's text ends right where a value starts: a value must not complete the author's braces either.
SPLIT_TEMPLATE = {"a": "{{trigger.memo}}", "b": "{{secrets.{{trigger.name}}", "c": "{{{trigger.open}}",
                  "d": "pre {{trigger.memo}} post"}


def external(body, name: str = "Call ERP", mode: str = "sync") -> dict:
    return {"type": "external", "name": name, "config": {
        "url": "https://erp.example/api", "method": "POST", "mode": mode,
        "headers": {"Authorization": "Bearer {{secrets.erp_key}}"}, "body": body}}


async def handler_pass(request) -> dict:
    renderer = Renderer(StaticSecretSource({request.template_id: {"erp_key": SECRET}}))
    rendered, used = await renderer.render(request, {k: request.config.get(k) for k in ("headers", "body")})
    assert used == [SECRET]  # the author's own reference still resolves
    return rendered


def assert_no_secret_except_authorization(rendered: dict) -> None:
    assert rendered["headers"]["Authorization"] == f"Bearer {SECRET}"
    assert SECRET not in json.dumps(rendered["body"])


@pytest.mark.parametrize("attack", ATTACKS, ids=repr)
async def test_a_secret_reference_in_trigger_data_is_sent_as_text_not_as_the_secret(attack):
    h = Harness(workflow(external({"memo": "{{trigger.memo}}", "text": "memo: {{trigger.memo}}"})))
    h.start({"memo": attack})
    rendered = await handler_pass(h.requests_for(1)[-1])
    assert_no_secret_except_authorization(rendered)
    assert rendered["body"]["memo"] == attack  # the requester's text arrives unchanged, as data


async def test_a_value_cannot_complete_the_authors_braces_into_a_secret_reference():
    h = Harness(workflow(external(SPLIT_TEMPLATE)))
    h.start({"memo": "{{secrets.erp_key}}", "name": "erp_key}}", "open": "{secrets.erp_key}}"})
    rendered = await handler_pass(h.requests_for(1)[-1])
    assert_no_secret_except_authorization(rendered)
    assert rendered["body"]["b"] == "{{secrets.erp_key}}"
    assert rendered["body"]["c"] == "{{secrets.erp_key}}"


@pytest.mark.parametrize("attack", ATTACKS, ids=repr)
async def test_a_secret_reference_in_a_step_result_is_never_rendered(attack):
    h = Harness(workflow(external({"q": 1}, name="Fetch"), external({"echo": "{{steps.fetch.body.note}}"})))
    h.start({})
    h.succeed(1, {"status": 200, "body": {"note": attack}})
    assert h.current_step == 2
    assert_no_secret_except_authorization(await handler_pass(h.requests_for(2)[-1]))


@pytest.mark.parametrize("attack", ATTACKS, ids=repr)
async def test_a_secret_reference_in_a_callback_body_is_never_rendered(attack):
    h = Harness(workflow(external({"q": 1}, name="Fetch", mode="async"),
                         external({"echo": "{{steps.fetch.result}}", "all": "{{steps.fetch}}"})))
    h.start({})
    h.accept(1)
    h.callback(1, "completed", {"result": attack})
    assert h.current_step == 2
    assert_no_secret_except_authorization(await handler_pass(h.requests_for(2)[-1]))


async def test_an_agents_reasoning_never_reaches_a_rendered_request_as_a_template():
    approval = {"type": "approval", "name": "Approve", "config": {"approvers": {"type": "role", "value": "ops"}}}
    h = Harness(workflow(approval, external({"who": "{{steps.approve}}", "trigger": "{{trigger}}"})))
    h.start({"note": "{{secrets.erp_key}}"}, initiated_by=human("requester"))
    h.approve(1, agent("agent_1", "ops", limits=False), reasoning="{{secrets.erp_key}} looks fine")
    assert h.current_step == 2
    rendered = await handler_pass(h.requests_for(2)[-1])
    assert_no_secret_except_authorization(rendered)


def test_the_engines_pass_leaves_the_authors_secret_reference_for_the_handler():
    names = {"trigger": {"memo": "{{secrets.k}}"}}
    out = render({"a": "{{secrets.k}}", "b": "{{trigger.memo}}"}, names, frozenset({"trigger"}))
    assert out["a"] == "{{secrets.k}}"
    assert out["b"] != "{{secrets.k}}"
    final = render(out, {"secrets": {"k": "V"}}, HANDLER_ROOTS, final=True)
    assert final == {"a": "V", "b": "{{secrets.k}}"}


def test_braces_in_data_survive_both_passes_unchanged():
    data = {"json": '{"a": {"b": 1}}', "odd": "}{", "token": "{{lbrace}}", "n": 3}
    out = render({"x": "{{trigger.json}}|{{trigger.odd}}|{{trigger.token}}", "y": "{{trigger}}"},
                 {"trigger": data}, frozenset({"trigger"}))
    final = render(out, {}, HANDLER_ROOTS, final=True)
    assert final["x"] == '{"a": {"b": 1}}|}{|{{lbrace}}'
    assert final["y"] == data


def _doc(url: str, *, secret_in: str = "headers") -> dict:
    config = {"url": url, "method": "POST", "headers": {}, "body": {}}
    config[secret_in] = {"key": "{{secrets.erp_key}}"}
    return workflow({"type": "external", "name": "Call ERP", "config": config},
                    {"type": "external", "name": "Other", "config": {"url": "https://crm.example/x"}})


def test_a_secret_sent_to_a_new_host_needs_confirming_again():
    from core.validation import secrets_sent_elsewhere
    old = _doc("https://erp.example/api/v1")
    assert secrets_sent_elsewhere(old, _doc("https://erp.example/api/v2")) == []
    assert secrets_sent_elsewhere(old, _doc("https://attacker.example/api/v1")) == ["erp_key"]
    assert secrets_sent_elsewhere(old, _doc("http://erp.example/api/v1")) == ["erp_key"]
    assert secrets_sent_elsewhere(old, _doc("https://erp.example:8443/api/v1")) == ["erp_key"]
    moved = workflow({"type": "external", "name": "Other", "config": {
        "url": "https://crm.example/x", "headers": {"k": "{{secrets.erp_key}}"}}})
    assert secrets_sent_elsewhere(old, moved) == ["erp_key"]
