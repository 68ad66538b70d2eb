"""Every endpoint x {no token -> 401, another tenant's object -> 404, a role that may not -> 403,
the right role -> 2xx}. Cells that cannot apply are absent (listed in NOT_APPLICABLE): a collection has no
other tenant's object, a read every principal may do has no wrong role, public endpoints have no token."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import pytest

from core import events as ev
from core.commands import ReportStepResult
from core.signing import callback_token, sign_payload
from gateway import openapi
from schemas import topics
from schemas.settings import DEV_CALLBACK_KEY
from tests.integration.gateway.test_api import manual_procurement

pytestmark = pytest.mark.asyncio(loop_scope="session")


@dataclass(frozen=True)
class Rule:
    right: str | None  # principal with the permission (None: public)
    wrong: str | None = None  # principal of the same tenant without it (None: every principal may)
    scoped: bool = True  # addresses one tenant's object (another tenant gets 404)
    body: str | None = None  # which request body (see bodies())


RULES: dict[str, Rule] = {
    "createTemplate": Rule("admin", "viewer", scoped=False, body="template"),
    "instantiateTemplate": Rule("admin", "viewer", body="overrides"),
    "listTemplates": Rule("viewer", scoped=False),
    "listStepTypes": Rule("viewer", scoped=False),
    "getTemplate": Rule("viewer"),
    "updateTemplate": Rule("admin", "viewer", body="template"),
    "deactivateTemplate": Rule("admin", "operator"),
    "validateTemplate": Rule("admin", "viewer", body="template"),
    "setTemplateSecret": Rule("admin", "operator", body="secret"),
    "listTemplateSecrets": Rule("admin", "viewer"),
    "triggerInstance": Rule("requester", "viewer", body="trigger"),
    "listInstances": Rule("viewer", scoped=False),
    "getInstance": Rule("viewer"),
    "approveStep": Rule("cfo", "viewer", body="decision"),
    "rejectStep": Rule("cfo", "requester", body="decision"),
    "escalateStep": Rule("cfo", "viewer", body="escalate"),
    "advanceInstance": Rule("agent", "viewer", body="advance"),
    "completeExternal": Rule("integration", "viewer", body="callback"),
    "completeExternalSpecPath": Rule("integration", "viewer", body="callback"),
    "getCallbackUrl": Rule("integration", "viewer"),
    "listAgentActions": Rule("viewer"),
    "requestTransition": Rule("agent", "viewer", body="transition"),
    "listTransitions": Rule("viewer"),
    "getResult": Rule("viewer"),
    "cancelInstance": Rule("operator", "requester", body="reason"),
    "pauseInstance": Rule("operator", "cfo", body="reason"),
    "resumeInstance": Rule("operator", "agent", body="empty"),
    "retryStep": Rule("operator", "viewer", body="empty"),
    "listPending": Rule("viewer", scoped=False),
    "getAgentPermissions": Rule("admin", "viewer"),
    "setAgentPermissions": Rule("admin", "operator", body="permissions"),
    "getAgentKey": Rule("admin", "viewer"),
    "getAgentAccessLog": Rule("admin", "viewer"),
    "getSecurityLog": Rule("admin", "operator", scoped=False),
    "listAgents": Rule("admin", "operator", scoped=False),
    "setAgentKey": Rule("admin", "operator", body="agent_key"),
    "getAnalytics": Rule("viewer", scoped=False),
    "getMe": Rule("viewer", scoped=False),
    "listMyDecisions": Rule("viewer", scoped=False),
    "getThroughput": Rule("viewer", scoped=False),
    "getPipeline": Rule("viewer"),
    "validateDocument": Rule("admin", "viewer", scoped=False, body="template"),
    "health": Rule(None, scoped=False),
    "metrics": Rule(None, scoped=False),
    "openapi": Rule(None, scoped=False),
    "docs": Rule(None, scoped=False),
}
EXTERNAL_OPS = {"completeExternal", "completeExternalSpecPath", "getCallbackUrl"}
DELETE_OPS = {"deactivateTemplate"}


def cases():
    out = []
    for _, _, operation in openapi.operations():
        name = operation["operationId"]
        rule = RULES[name]
        if rule.right is None:
            out.append((name, "public"))
            continue
        out += [(name, "no_token"), (name, "right_role")]
        if rule.wrong:
            out.append((name, "wrong_role"))
        if rule.scoped:
            out.append((name, "wrong_tenant"))
    return out


async def test_every_operation_has_a_rule():
    assert {op["operationId"] for _, _, op in openapi.operations()} == set(RULES)


@pytest.fixture(scope="module")
async def matrix(api_world):
    a = await api_world.new_tenant()
    b = await api_world.new_tenant()
    _, template = await api_world.call("POST", "/v1/workflows/templates", a, json=manual_procurement(), expect=201)
    _, doomed = await api_world.call("POST", "/v1/workflows/templates", a, json=manual_procurement(), expect=201)
    _, instance = await api_world.call("POST", "/v1/workflows/instances?wait=true", a, "requester",
                                       json={"template_id": template["id"], "trigger_data": {"amount": 5000}},
                                       expect=201)
    external_doc = {"name": "ERP", "trigger_type": "manual", "steps": [
        {"type": "external", "name": "Submit", "config": {"mode": "async", "url": "https://erp.example/api"}}]}
    _, ext_template = await api_world.call("POST", "/v1/workflows/templates", a, json=external_doc, expect=201)
    externals = []
    for _ in range(2):  # one callback is accepted per step attempt: each callback operation gets its own
        _, ext = await api_world.call("POST", "/v1/workflows/instances?wait=true", a, "operator",
                                      json={"template_id": ext_template["id"]}, expect=201)
        request = await api_world.engine.wait_for_request(ext["id"], step=1)
        await api_world.engine.send_command(ReportStepResult(
            command_id=f"result:{request.request_id}", instance_id=ext["id"], step=1, attempt=request.attempt,
            outcome="accepted", output={"status": 202}), topic=topics.WORKFLOW_STEP_RESULTS)
        await api_world.engine.wait_for_event(ext["id"], ev.ExternalCallAccepted)
        await api_world.wait_instance(a, ext["id"], lambda d: d["blocking"].get("waiting_for") == "callback")
        externals.append(ext["id"])
    await api_world.wait_instance(a, instance["id"], lambda d: d["blocking"].get("waiting_for") == "approval")
    return {"a": a, "b": b, "template": template["id"], "doomed": doomed["id"], "instance": instance["id"],
            "external": externals[0], "external_spec_path": externals[1], "agent": a.ids["agent"]}


def request_for(name: str, m: dict, unique: str) -> tuple[str, str, dict]:
    method, path = next((mt, p) for mt, p, op in openapi.operations() if op["operationId"] == name)
    instance = m["external_spec_path"] if name == "completeExternalSpecPath" else \
        m["external"] if name in EXTERNAL_OPS else m["instance"]
    template = m["doomed"] if name in DELETE_OPS else m["template"]
    agent = m["agent"]
    step = "1" if name in EXTERNAL_OPS else "2"
    url = path.replace("{n}", step)
    if "/agents/" in path:
        url = url.replace("{id}", agent)
    elif "/templates/" in path:
        url = url.replace("{id}", template)
    else:
        url = url.replace("{id}", instance)
    kwargs: dict = {}
    body = RULES[name].body
    bodies = {
        "template": manual_procurement(), "secret": {"name": "api_key", "value": "x"},
        "trigger": {"template_id": m["template"], "trigger_data": {"amount": 1}},
        "decision": {"reasoning": "matrix"}, "advance": {"action": "proceed_if_ready"},
        "transition": {"target_state": "approved", "reason": "matrix"},
        "overrides": {"name": f"matrix copy {unique}"},
        "reason": {"reason": "matrix"}, "empty": {},
        "escalate": {"approvers": {"type": "role", "value": "ceo"}, "reason": "matrix"},
        "permissions": {"workflow_permissions": {"can_initiate": [m["template"]], "can_approve": {}}},
        "agent_key": {"public_key": "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="},
        "callback": {"status": "completed", "result": {"ok": True}},
    }
    if body == "callback":
        raw = json.dumps(bodies[body]).encode()
        token = callback_token(DEV_CALLBACK_KEY.encode(), instance, 1, 1)
        kwargs["data"] = raw
        kwargs["headers"] = {"Content-Type": "application/json",
                             "X-Flowline-Signature": sign_payload(token.encode(), raw, int(time.time()))}
    elif body:
        kwargs["json"] = bodies[body]
    if method == "POST":
        kwargs.setdefault("headers", {})["Idempotency-Key"] = unique
    return method, url, kwargs


@pytest.mark.parametrize(("operation", "cell"), cases(), ids=[f"{o}-{c}" for o, c in cases()])
async def test_authorization(api_world, matrix, operation, cell):
    rule = RULES[operation]
    method, url, kwargs = request_for(operation, matrix, f"{operation}-{cell}")
    if cell == "public":
        status, _ = await api_world.call(method, url, **kwargs)
        assert status == 200, f"{method} {url} -> {status}"
        return
    if cell == "no_token":
        status, body = await api_world.call(method, url, **kwargs)
        assert status == 401 and body["status"] == 401
        return
    if cell == "wrong_tenant":
        status, body = await api_world.call(method, url, matrix["b"], rule.right, **kwargs)
        assert status == 404, f"{method} {url} as {rule.right} of another tenant -> {status}: {body}"
        return
    who = rule.wrong if cell == "wrong_role" else rule.right
    status, body = await api_world.call(method, url, matrix["a"], who, **kwargs)
    if cell == "wrong_role":
        assert status == 403, f"{method} {url} as {who} -> {status}: {body}"
        assert body["type"].endswith("forbidden")
    else:
        assert 200 <= status < 300, f"{method} {url} as {who} -> {status}: {body}"


# ------------------------------------------------------------------ tenant isolation of lists and filters

def list_queries(m: dict) -> list[str]:
    """Every list and aggregate, with every filter, including filters naming the other tenant's objects."""
    t, i = m["template"], m["instance"]
    return [
        "/v1/workflows/templates", "/v1/workflows/templates?status=ACTIVE", "/v1/workflows/templates?status=PAUSED",
        "/v1/workflows/instances", "/v1/workflows/instances?status=ACTIVE", f"/v1/workflows/instances?template_id={t}",
        "/v1/workflows/instances?created_after=2000-01-01T00:00:00Z",
        "/v1/workflows/instances?created_before=2999-01-01T00:00:00Z", "/v1/workflows/instances?blocked_on=me",
        "/v1/workflows/pending", "/v1/workflows/pending?sort=deadline", "/v1/workflows/analytics",
        f"/v1/workflows/analytics?template_id={t}", "/v1/workflows/analytics?created_after=2000-01-01T00:00:00Z",
        f"/v1/workflows/instances/{i}", f"/v1/workflows/instances/{i}/agent-actions",
    ]


async def test_lists_and_filters_never_show_another_tenants_objects(api_world, matrix):
    a, b = matrix["a"], matrix["b"]
    # b has objects of its own, so an empty answer is not what makes the test pass
    _, own = await api_world.call("POST", "/v1/workflows/templates", b, json=manual_procurement(), expect=201)
    _, started = await api_world.call("POST", "/v1/workflows/instances?wait=true", b, "requester",
                                      json={"template_id": own["id"], "trigger_data": {"amount": 5000}}, expect=201)
    await api_world.wait_instance(b, started["id"], lambda d: d["blocking"].get("waiting_for") == "approval")
    a_ids = {matrix["template"], matrix["doomed"], matrix["instance"], matrix["external"],
             matrix["external_spec_path"], a.id}
    seen_by_a = 0
    for path in list_queries(matrix):
        for who in ("admin", "viewer", "cfo", "agent"):
            status, body = await api_world.call("GET", path, b, who)
            text = json.dumps(body)
            assert status in (200, 404), f"{path} as b's {who} -> {status}: {text[:300]}"
            if status == 404:  # a's instance by id: not found (the problem echoes only the path it was asked)
                assert a.id not in text.replace(path, "")
                continue
            leaked = {x for x in a_ids if x in text}
            assert not leaked, f"{path} as b's {who} shows tenant a's {leaked}: {text[:500]}"
        # the same query by a's principal does show a's objects where a list would: the filter is real
        status, body = await api_world.call("GET", path, a, "cfo")
        seen_by_a += status == 200 and any(x in json.dumps(body) for x in a_ids)
    assert seen_by_a >= 10
    # and b's own objects are listed for b
    _, listed = await api_world.call("GET", "/v1/workflows/pending", b, "cfo", expect=200)
    assert [p["instance_id"] for p in listed["items"]] == [started["id"]]
    # b's admin naming a's templates in an agent permission: unknown, never a's
    status, body = await api_world.call("POST", f"/v1/agents/{b.ids['agent']}/workflow-permissions", b, json={
        "workflow_permissions": {"can_initiate": [matrix["template"], "procurement_approval"]}})
    assert status == 422 and len(body["errors"]) == 1, body  # the slug finds b's own procurement template
