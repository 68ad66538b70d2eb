"""The reads the dashboard adds: who am I and validate a template without an id (gateway/dashboard.py),
throughput and a template's pipeline (gateway/analytics.py)."""

from __future__ import annotations

import pytest

from core.builtin import builtin_template
from tests.integration.gateway.test_api import manual_procurement

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_me_tells_tenant_roles_and_permissions(api_world, tenant):
    _, viewer = await api_world.call("GET", "/v1/me", tenant, "viewer", expect=200)
    assert viewer == {"id": tenant.ids["viewer"], "tenant_id": tenant.id, "kind": "human", "roles": ["viewer"],
                      "display_name": "viewer", "permissions": ["read"], "can_initiate": None}
    _, cfo = await api_world.call("GET", "/v1/me", tenant, "cfo", expect=200)
    assert cfo["permissions"] == ["decide", "read"]


async def test_me_tells_an_agent_the_templates_it_may_start(api_world, tenant):
    """The dashboard offers "Start" only where the server would accept it (story 29.12 can_initiate)."""
    _, first = await api_world.call("POST", "/v1/workflows/templates", tenant,
                                    json={**manual_procurement(), "name": "Agent may start"}, expect=201)
    await api_world.call("POST", "/v1/workflows/templates", tenant,
                         json={**manual_procurement(), "name": "Agent may not"}, expect=201)
    _, before = await api_world.call("GET", "/v1/me", tenant, "agent", expect=200)
    assert before["kind"] == "agent" and before["can_initiate"] == []
    await api_world.call("POST", f"/v1/agents/{tenant.ids['agent']}/workflow-permissions", tenant,
                         json={"workflow_permissions": {"can_initiate": [first["id"]]}}, expect=200)
    _, after = await api_world.call("GET", "/v1/me", tenant, "agent", expect=200)
    assert after["can_initiate"] == [first["id"]]


async def test_agents_lists_the_tenants_agents_to_admins_only(api_world, tenant):
    """The Security page picks an agent from this list to read its access log."""
    other = await api_world.new_tenant()
    _, listed = await api_world.call("GET", "/v1/agents", tenant, "admin", expect=200)
    assert listed == {"items": [{"id": tenant.ids["agent"], "display_name": "agent", "roles": [],
                                 "has_public_key": False}], "next_cursor": None}
    _, theirs = await api_world.call("GET", "/v1/agents", other, "admin", expect=200)
    assert [a["id"] for a in theirs["items"]] == [other.ids["agent"]]  # never another tenant's agents
    for who in ("viewer", "operator", "agent"):
        status, problem = await api_world.call("GET", "/v1/agents", tenant, who)
        assert status == 403, (who, problem)
    status, problem = await api_world.call("GET", "/v1/agents?limit=0", tenant, "admin")
    assert status == 400 and problem["pointer"] == "/query/limit"
    status, _ = await api_world.call("GET", "/v1/agents?cursor=bogus", tenant, "admin")
    assert status == 400


async def test_validate_a_new_document_reports_pointers(api_world, tenant):
    document = builtin_template("procurement_approval")
    _, ok = await api_world.call("POST", "/v1/workflows/templates/validate", tenant, json=document, expect=200)
    assert ok == {"valid": True, "errors": []}
    del document["steps"][1]["config"]["approvers"]
    document["steps"].append({"type": "wait", "name": "Nap"})
    _, bad = await api_world.call("POST", "/v1/workflows/templates/validate", tenant, json=document, expect=200)
    assert bad["valid"] is False
    assert {e["pointer"] for e in bad["errors"]} == {"/steps/1/config/approvers", "/steps/4/config"}
    # a shape the JSON schema would refuse is still answered with pointers, not a 422
    _, shapeless = await api_world.call("POST", "/v1/workflows/templates/validate", tenant,
                                        json={"steps": [{"type": "teleport"}]}, expect=200)
    assert {"/name", "/steps/0/type", "/steps/0/name"} <= {e["pointer"] for e in shapeless["errors"]}


async def test_throughput_approvers_and_pipeline(api_world, tenant):
    world = api_world
    _, template = await world.call("POST", "/v1/workflows/templates", tenant, json=manual_procurement(), expect=201)
    ids = []
    for n in range(2):  # 500 skips the CFO: the manager approves, then the payment step runs
        _, started = await world.call("POST", "/v1/workflows/instances?wait=true", tenant, "requester", json={
            "template_id": template["id"], "trigger_data": {"id": f"tr_{n}", "amount": 500}}, expect=201)
        ids.append(started["id"])
        await world.wait_instance(tenant, started["id"], lambda d: d["current_step"] == 3)
        await world.call("POST", f"/v1/workflows/instances/{started['id']}/steps/3/approve?wait=true", tenant,
                         "manager", json={"reasoning": "ok"}, expect=200)
    await world.play_action_handler(ids[0], 4)
    await world.play_action_handler(ids[1], 4, error="insufficient funds")
    await world.wait_instance(tenant, ids[0], lambda d: d["status"] == "COMPLETED")
    await world.wait_instance(tenant, ids[1], lambda d: d["status"] == "FAILED")

    _, t = await world.call("GET", "/v1/workflows/analytics/throughput?bucket=hour&periods=2", tenant, "viewer",
                            expect=200)
    assert t["bucket"] == "hour"
    assert sum(b["started"] for b in t["series"]) == 2
    assert sum(b["completed"] for b in t["series"]) == 1 and sum(b["failed"] for b in t["series"]) == 1
    assert t["busiest_approvers"][0]["approver"] == tenant.ids["manager"]
    assert t["busiest_approvers"][0]["decisions"] == 2
    status, problem = await world.call("GET", "/v1/workflows/analytics/throughput?bucket=week", tenant, "viewer")
    assert status == 400 and problem["pointer"] == "/query/bucket"

    _, p = await world.call("GET", f"/v1/workflows/templates/{template['id']}/pipeline", tenant, "viewer",
                            expect=200)
    by_step = {s["step"]: s for s in p["steps"]}
    assert sorted(by_step) == [1, 3, 4]
    assert by_step[3]["counts"] == {"APPROVED": 2} and by_step[3]["type"] == "approval"
    assert by_step[4]["counts"] == {"COMPLETED": 1, "FAILED": 1}
    assert p["failures"] == [{"instance_id": ids[1], "instance_status": "FAILED", "step": 4, "attempt": 1,
                              "name": "Execute Payment", "status": "FAILED",
                              "error": "execute_transfer failed: insufficient funds; nothing was paid",
                              "ended_at": p["failures"][0]["ended_at"], "retryable": True}]
    other = await world.new_tenant()
    status, _ = await world.call("GET", f"/v1/workflows/templates/{template['id']}/pipeline", other, "viewer")
    assert status == 404

    _, mine = await world.call("GET", "/v1/workflows/decisions", tenant, "manager", expect=200)
    assert [(d["instance_id"], d["step"], d["step_name"], d["decision"], d["reasoning"]) for d in mine["items"]] == [
        (ids[1], 3, "Manager Approval", "approve", "ok"), (ids[0], 3, "Manager Approval", "approve", "ok")]
    _, nobody = await world.call("GET", "/v1/workflows/decisions", tenant, "cfo", expect=200)
    assert nobody["items"] == []
