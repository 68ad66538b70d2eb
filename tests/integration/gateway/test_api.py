"""The gateway against the real broker, database, engine and projector: templates, instances, decisions."""

from __future__ import annotations

import copy
import json
import time

import asyncpg
import pytest

from core import events as ev
from core.builtin import builtin_template
from core.signing import callback_token, sign_payload
from gateway.settings import DEV_CALLBACK_KEY

pytestmark = pytest.mark.asyncio(loop_scope="session")

T = "/v1/workflows/templates"
I = "/v1/workflows/instances"  # noqa: E741


def manual_procurement() -> dict:
    doc = builtin_template("procurement_approval")
    doc["trigger_type"] = "manual"
    doc.pop("trigger_config")
    return doc


async def create(world, tenant, doc=None) -> dict:
    _, body = await world.call("POST", T, tenant, json=doc or manual_procurement(), expect=201)
    return body


async def test_template_crud_versions_and_validation_pointers(api_world, tenant):
    created = await create(api_world, tenant)
    assert created["version"] == 1 and created["status"] == "ACTIVE" and created["id"].startswith("wft_")
    changed = manual_procurement()
    changed["description"] = "v2"
    _, v2 = await api_world.call("PUT", f"{T}/{created['id']}", tenant, json=changed, expect=200)
    assert v2["version"] == 2 and v2["versions"] == [1, 2]
    _, old = await api_world.call("GET", f"{T}/{created['id']}?version=1", tenant, expect=200)
    assert old["version"] == 1 and old["document"]["description"] != "v2"
    _, listed = await api_world.call("GET", T, tenant, expect=200)
    assert [t["id"] for t in listed["items"]] == [created["id"]]

    bad = copy.deepcopy(changed)
    bad["steps"][1]["type"] = "teleport"
    bad["colour"] = "red"
    status, problem = await api_world.call("PUT", f"{T}/{created['id']}", tenant, json=bad)
    assert status == 422
    pointers = {e["pointer"] for e in problem["errors"]}
    assert "/colour" in pointers and "/steps/1/type" in pointers
    _, result = await api_world.call("POST", f"{T}/{created['id']}/validate", tenant, json=bad, expect=200)
    assert result["valid"] is False and result["errors"]

    _, deactivated = await api_world.call("DELETE", f"{T}/{created['id']}", tenant, expect=200)
    assert deactivated["status"] == "PAUSED"
    status, problem = await api_world.call("POST", I, tenant, "requester", json={"template_id": created["id"]})
    assert status == 409 and problem["pointer"] == "/template_id"


async def test_secrets_are_stored_encrypted_and_never_returned(api_world, tenant, database_url):
    created = await create(api_world, tenant)
    path = f"{T}/{created['id']}/secrets"
    _, stored = await api_world.call("POST", path, tenant, json={"name": "erp_api_key", "value": "s3cr3t"},
                                     expect=201)
    assert stored["name"] == "erp_api_key" and "value" not in stored
    _, listed = await api_world.call("GET", path, tenant, expect=200)
    assert [s["name"] for s in listed["items"]] == ["erp_api_key"] and "s3cr3t" not in json.dumps(listed)
    conn = await asyncpg.connect(database_url)
    try:
        raw = await conn.fetchval("SELECT encrypted_value FROM workflow_template_secrets WHERE template_id = $1",
                                  created["id"])
    finally:
        await conn.close()
    assert raw.startswith("v1:") and "s3cr3t" not in raw


async def test_manual_trigger_approve_and_audit_trail(api_world, tenant):
    template = await create(api_world, tenant)
    _, started = await api_world.call(
        "POST", f"{I}?wait=true", tenant, "requester", json={"template_id": template["id"],
                                                             "trigger_data": {"id": "tr_1", "amount": 5000}},
        headers={"Idempotency-Key": "order-1"}, expect=201)
    instance_id = started["id"]
    assert started["initiated_by"] == {"id": tenant.ids["requester"], "kind": "human"}
    # replaying the same key returns the first response; another body with the same key is refused
    status, replay = await api_world.call(
        "POST", f"{I}?wait=true", tenant, "requester", json={"template_id": template["id"],
                                                             "trigger_data": {"id": "tr_1", "amount": 5000}},
        headers={"Idempotency-Key": "order-1"})
    assert status == 201 and replay["id"] == instance_id
    status, _ = await api_world.call("POST", I, tenant, "requester",
                                     json={"template_id": template["id"], "trigger_data": {"amount": 1}},
                                     headers={"Idempotency-Key": "order-1"})
    assert status == 422

    detail = await api_world.wait_instance(tenant, instance_id, lambda b: b["blocking"].get("waiting_for"))
    assert detail["current_step"] == 2 and detail["blocking"]["step_name"] == "CFO Approval"
    _, pending = await api_world.call("GET", "/v1/workflows/pending", tenant, "cfo", expect=200)
    assert [p["instance_id"] for p in pending["items"]] == [instance_id]
    _, mine = await api_world.call("GET", f"{I}?blocked_on=me", tenant, "cfo", expect=200)
    assert [i["id"] for i in mine["items"]] == [instance_id]
    _, none = await api_world.call("GET", f"{I}?blocked_on=me", tenant, "manager", expect=200)
    assert none["items"] == []

    # the manager may not decide the CFO step: the engine rejects it, wait=true says why
    status, problem = await api_world.call("POST", f"{I}/{instance_id}/steps/2/approve?wait=true", tenant,
                                           "manager", json={"reasoning": "looks fine"})
    assert status == 409 and "not among the approvers" in problem["detail"]

    _, after = await api_world.call("POST", f"{I}/{instance_id}/steps/2/approve?wait=true", tenant, "cfo",
                                    json={"reasoning": "budgeted"}, expect=200)
    assert after["current_step"] == 3
    _, after = await api_world.call("POST", f"{I}/{instance_id}/steps/3/approve?wait=true", tenant, "manager",
                                    json={"reasoning": "ok"}, expect=200)
    assert after["blocking"]["step_name"] == "Execute Payment"
    await api_world.play_action_handler(instance_id, 4)
    done = await api_world.wait_instance(tenant, instance_id, lambda b: b["status"] == "COMPLETED")
    kinds = [(t["event_type"], t["actor"]["kind"]) for t in done["timeline"]]
    assert ("DecisionRecorded", "human") in kinds and kinds[-1] == ("InstanceCompleted", "system")
    decisions = [t for t in done["timeline"] if t["event_type"] == "DecisionRecorded"]
    assert [(d["actor"]["id"], d["reasoning"]) for d in decisions] == [
        (tenant.ids["cfo"], "budgeted"), (tenant.ids["manager"], "ok")]
    assert [t["seq"] for t in done["timeline"]] == list(range(1, len(done["timeline"]) + 1))


async def test_pause_resume_cancel_and_rejections(api_world, tenant):
    template = await create(api_world, tenant)
    _, started = await api_world.call("POST", f"{I}?wait=true", tenant, "operator",
                                      json={"template_id": template["id"], "trigger_data": {"amount": 10}},
                                      expect=201)
    iid = started["id"]
    _, paused = await api_world.call("POST", f"{I}/{iid}/pause?wait=true", tenant, "operator",
                                     json={"reason": "audit"}, expect=200)
    assert paused["status"] == "PAUSED"
    status, problem = await api_world.call("POST", f"{I}/{iid}/pause?wait=true", tenant, "operator")
    assert status == 409 and "PAUSED" in problem["detail"]
    _, resumed = await api_world.call("POST", f"{I}/{iid}/resume?wait=true", tenant, "operator", expect=200)
    assert resumed["status"] == "ACTIVE"
    _, actions = await api_world.call("GET", f"{I}/{iid}/agent-actions", tenant, "manager", expect=200)
    assert {a["action"] for a in actions["actions"]} == {"approve", "reject"}
    _, cancelled = await api_world.call("POST", f"{I}/{iid}/cancel?wait=true", tenant, "operator",
                                        json={"reason": "duplicate order"}, expect=200)
    assert cancelled["status"] == "CANCELLED" and cancelled["failure_reason"] == "duplicate order"
    status, problem = await api_world.call("POST", f"{I}/{iid}/steps/3/approve?wait=true", tenant, "manager")
    assert status == 409


async def test_complete_external_verifies_the_signature(api_world, tenant):
    doc = {"name": "ERP check", "trigger_type": "manual", "steps": [
        {"type": "external", "name": "Submit", "config": {"mode": "async", "url": "https://erp.example/api",
                                                         "method": "POST", "completion_timeout_hours": 1}}]}
    template = await create(api_world, tenant, doc)
    _, started = await api_world.call("POST", f"{I}?wait=true", tenant, "operator",
                                      json={"template_id": template["id"]}, expect=201)
    iid = started["id"]
    # stand in for the external handler: the async call was made and accepted
    request = await api_world.engine.wait_for_request(iid, step=1)
    from core.commands import ReportStepResult
    from deploy import topics

    await api_world.engine.send_command(ReportStepResult(
        command_id=f"result:{request.request_id}", instance_id=iid, step=1, attempt=request.attempt,
        outcome="accepted", output={"status": 202, "body": {}}), topic=topics.WORKFLOW_STEP_RESULTS)
    await api_world.engine.wait_for_event(iid, ev.ExternalCallAccepted)
    await api_world.wait_instance(tenant, iid, lambda b: b["blocking"].get("waiting_for") == "callback")
    _, cb = await api_world.call("GET", f"{I}/{iid}/steps/1/callback-url", tenant, "integration", expect=200)
    assert cb["token"] == callback_token(DEV_CALLBACK_KEY.encode(), iid, 1, cb["attempt"])
    body = json.dumps({"status": "completed", "result": {"risk_score": 0.12}}).encode()
    path = f"{I}/{iid}/steps/1/complete-external?wait=true"
    headers = {"Content-Type": "application/json"}
    bad = sign_payload(b"wrong-token", body, int(time.time()))
    status, problem = await api_world.call("POST", path, tenant, "integration", data=body,
                                           headers={**headers, "X-Flowline-Signature": bad})
    assert status == 401 and "does not match" in problem["detail"]
    stale = sign_payload(cb["token"].encode(), body, int(time.time()) - 3600)
    status, problem = await api_world.call("POST", path, tenant, "integration", data=body,
                                           headers={**headers, "X-Flowline-Signature": stale})
    assert status == 401 and "replay window" in problem["detail"]
    good = sign_payload(cb["token"].encode(), body, int(time.time()))
    _, done = await api_world.call("POST", path, tenant, "integration", data=body,
                                   headers={**headers, "X-Flowline-Signature": good}, expect=200)
    assert done["status"] == "COMPLETED"
    assert done["steps"][-1]["external_response"] == {"risk_score": 0.12}


async def test_errors_are_problem_documents(api_world, tenant):
    client = api_world.client
    response = await client.post(T, data=b"{not json", headers={**tenant.auth("admin"),
                                                               "Content-Type": "application/json"})
    assert response.status == 400 and response.content_type == "application/problem+json"
    response = await client.post(T, data=b"x" * (300 * 1024), headers={**tenant.auth("admin"),
                                                                      "Content-Type": "application/json"})
    assert response.status == 413 and (await response.json())["status"] == 413
    response = await client.post(I, json={"template_id": "x", "extra": 1}, headers=tenant.auth("admin"))
    problem = await response.json()
    assert response.status == 422 and problem["errors"][0]["pointer"] == ""
    assert "extra" in problem["errors"][0]["message"]
    response = await client.get(f"{I}/nope", headers={"Authorization": "Bearer wrong"})
    assert response.status == 401 and response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_projector_is_idempotent_under_redelivery(api_world, tenant, database_url):
    template = await create(api_world, tenant)
    _, started = await api_world.call("POST", f"{I}?wait=true", tenant, "operator",
                                      json={"template_id": template["id"], "trigger_data": {"amount": 7}},
                                      expect=201)
    iid = started["id"]
    events = api_world.engine.events[iid]
    await api_world.engine.wait_until(lambda: any(isinstance(e, ev.ApprovalRequested) for e in events))
    before = await api_world.wait_instance(tenant, iid, lambda b: b["blocking"].get("waiting_for") == "approval")
    rows = await api_world.projector.apply_events(list(events))
    assert rows.applied == 0 and rows.skipped == len(events)
    _, after = await api_world.call("GET", f"{I}/{iid}", tenant, expect=200)
    assert after == before


async def test_an_approver_escalates_a_waiting_approval_through_the_api(api_world, tenant):
    doc = manual_procurement()
    doc["steps"][1]["config"]["escalate_to"] = {"type": "role", "value": "finance_manager"}
    template = await create(api_world, tenant, doc)
    _, started = await api_world.call("POST", f"{I}?wait=true", tenant, "requester",
                                      json={"template_id": template["id"], "trigger_data": {"amount": 5000}},
                                      expect=201)
    iid = started["id"]
    await api_world.wait_instance(tenant, iid, lambda b: b["blocking"].get("waiting_for") == "approval")
    # a viewer may not escalate; the engine judges the CFO (an approver of step 2) may
    status, _ = await api_world.call("POST", f"{I}/{iid}/steps/2/escalate", tenant, "viewer",
                                     json={"approvers": {"type": "role", "value": "finance_manager"}})
    assert status == 403
    # the target is the template's: a caller naming another one is refused (docs/security.md)
    status, problem = await api_world.call("POST", f"{I}/{iid}/steps/2/escalate?wait=true", tenant, "cfo",
                                           json={"approvers": {"type": "role", "value": "clerk"}})
    assert status == 409 and "the template's target" in problem["detail"]
    _, after = await api_world.call("POST", f"{I}/{iid}/steps/2/escalate?wait=true", tenant, "cfo",
                                    json={"reason": "travelling", "timeout_hours": 4}, expect=200)
    assert after["blocking"]["approvers"] == {"type": "role", "value": "finance_manager"}
    assert any(t["event_type"] == "ApprovalEscalated" for t in after["timeline"])
    # the escalated approver can now decide the CFO step
    _, decided = await api_world.call("POST", f"{I}/{iid}/steps/2/approve?wait=true", tenant, "manager",
                                      json={"reasoning": "covering for the CFO"}, expect=200)
    assert decided["current_step"] == 3
