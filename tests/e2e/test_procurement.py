"""The epic's procurement example end to end: a transfer event on payments.transfers starts it, the right
people (or an agent within its limit) approve through the API, the payment step runs, and GET
/instances/{id} shows the whole audit trail."""

from __future__ import annotations

import asyncio
import base64
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from core.agent_signing import canonical_decision
from core.builtin import builtin_template
from schemas.records import TransferEvent

pytestmark = pytest.mark.asyncio(loop_scope="session")

I = "/v1/workflows/instances"  # noqa: E741


def transfer(tenant_id: str, event_id: str, amount_minor: int) -> TransferEvent:
    return TransferEvent(event_id=event_id, transfer_id=f"tr_{event_id}", event_type="transfer.created",
                         tenant_id=tenant_id, amount_minor=amount_minor, currency="USD", currency_exponent=2,
                         source_account="acc_src", destination_account="acc_vendor",
                         metadata={"type": "procurement"}, occurred_at=int(time.time() * 1000))


async def start_by_transfer(world, tenant, amount_minor: int) -> tuple[str, str]:
    _, template = await world.call("POST", "/v1/workflows/templates", tenant,
                                   json=builtin_template("procurement_approval"), expect=201)
    await world.engine_knows(template["id"])
    await world.engine.send_transfer(transfer(tenant.id, f"evt_{tenant.id}", amount_minor))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        _, listed = await world.call("GET", f"{I}?template_id={template['id']}", tenant, "viewer", expect=200)
        if listed["items"]:
            return template["id"], listed["items"][0]["id"]
        await asyncio.sleep(0.1)
    raise AssertionError("the transfer started no instance")


async def wait_blocked_at(world, tenant, instance_id: str, step: int) -> dict:
    return await world.wait_instance(tenant, instance_id, lambda b: b["current_step"] == step and
                                     b["blocking"].get("waiting_for") in ("approval", "handler"))


async def test_transfer_event_to_completed_payment_with_human_approvals(e2e_world):
    world = e2e_world
    tenant = await world.new_tenant()
    _, instance_id = await start_by_transfer(world, tenant, 250_000)  # 2,500.00 USD: CFO and manager
    detail = await wait_blocked_at(world, tenant, instance_id, 2)
    assert detail["source"].startswith("event:") and detail["trigger"]["amount"] == 2500
    assert detail["blocking"]["step_name"] == "CFO Approval"
    assert detail["blocking"]["approvers"] == {"type": "role", "value": "cfo"}

    status, problem = await world.call("POST", f"{I}/{instance_id}/steps/2/approve?wait=true", tenant, "manager",
                                       json={"reasoning": "I am not the CFO"})
    assert status == 409 and "not among the approvers" in problem["detail"]
    await world.call("POST", f"{I}/{instance_id}/steps/2/approve?wait=true", tenant, "cfo",
                     json={"reasoning": "within Q3 budget"}, expect=200)
    detail = await wait_blocked_at(world, tenant, instance_id, 3)
    assert detail["blocking"]["step_name"] == "Manager Approval"
    await world.call("POST", f"{I}/{instance_id}/steps/3/approve?wait=true", tenant, "manager",
                     json={"reasoning": "vendor verified"}, expect=200)
    # Execute Payment: we stand in for the action handler (consume its StepRequest, report success), so the
    # test does not depend on the handler processes.
    await world.play_action_handler(instance_id, 4, {"status": "executed", "transfer_id": f"tr_evt_{tenant.id}"})
    done = await world.wait_instance(tenant, instance_id, lambda b: b["status"] == "COMPLETED")

    assert [s["status"] for s in done["steps"]] == ["COMPLETED", "APPROVED", "APPROVED", "COMPLETED"]
    assert done["steps"][3]["output"]["status"] == "executed"
    timeline = [(t["event_type"], t["step"], t["actor"]["id"], t["actor"]["kind"], t["reasoning"])
                for t in done["timeline"]]
    assert ("DecisionRecorded", 2, tenant.ids["cfo"], "human", "within Q3 budget") in timeline
    assert ("DecisionRecorded", 3, tenant.ids["manager"], "human", "vendor verified") in timeline
    assert any(t[0] == "CommandRejected" and "not among the approvers" in t[4] for t in timeline)
    assert timeline[0][0] == "InstanceStarted" and timeline[-1][0] == "InstanceCompleted"
    assert [t["seq"] for t in done["timeline"]] == list(range(1, len(timeline) + 1))
    _, analytics = await world.call("GET", "/v1/workflows/analytics", tenant, "viewer", expect=200)
    assert analytics["counts_by_status"] == {"COMPLETED": 1}
    assert analytics["approval_latency_seconds"]["count"] == 2


async def test_agent_approves_within_its_limit_and_is_refused_above_it(e2e_world):
    world = e2e_world
    tenant = await world.new_tenant()
    agent = tenant.ids["agent"]
    _, small = await world.call("POST", "/v1/workflows/templates", tenant,
                                json=builtin_template("procurement_approval"), expect=201)
    template_id = small["id"]
    await world.call("POST", f"/v1/agents/{agent}/workflow-permissions", tenant, json={
        "agent_id": agent, "workflow_permissions": {
            "can_initiate": [template_id],
            "can_approve": {template_id: {"max_amount": 1000, "step_names": ["Manager Approval"]}}}}, expect=200)
    _, perms = await world.call("GET", f"/v1/agents/{agent}/workflow-permissions", tenant, "agent", expect=200)
    assert perms["workflow_permissions"]["can_approve"][template_id]["max_amount"] == 1000

    # within the limit: 500 skips the CFO; the agent decides the manager step
    _, within = await world.call("POST", f"{I}?wait=true", tenant, "requester", json={
        "template_id": template_id, "trigger_data": {"id": "tr_small", "amount": 500}}, expect=201)
    await wait_blocked_at(world, tenant, within["id"], 3)
    _, pending = await world.call("GET", "/v1/workflows/pending", tenant, "agent", expect=200)
    assert [p["instance_id"] for p in pending["items"]] == [within["id"]]
    _, actions = await world.call("GET", f"{I}/{within['id']}/agent-actions", tenant, "agent", expect=200)
    assert {a["action"] for a in actions["actions"]} >= {"approve", "reject", "advance"}
    # the story's agent_signature, now a real one: Ed25519 over the canonical decision, its key registered
    key = Ed25519PrivateKey.generate()
    await world.call("PUT", f"/v1/agents/{agent}/public-key", tenant, json={"public_key": base64.b64encode(
        key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()}, expect=200)
    reasoning, signed_at = "Amount within agent spending limit, vendor pre-approved", int(time.time())
    signature = base64.b64encode(key.sign(canonical_decision(
        instance_id=within["id"], step=3, attempt=1, decision="approve", reasoning=reasoning,
        timestamp=signed_at))).decode()
    await world.call("POST", f"{I}/{within['id']}/steps/3/approve?wait=true", tenant, "agent", json={
        "decision": "approved", "reasoning": reasoning, "agent_signature": signature, "signed_at": signed_at},
        expect=200)
    await world.play_action_handler(within["id"], 4)
    done = await world.wait_instance(tenant, within["id"], lambda b: b["status"] == "COMPLETED")
    manager_step = next(s for s in done["steps"] if s["step"] == 3)
    assert manager_step["approved_by_agent_id"] == agent
    assert manager_step["agent_reasoning"] == "Amount within agent spending limit, vendor pre-approved"
    decision = next(t for t in done["timeline"] if t["event_type"] == "DecisionRecorded")
    assert decision["actor"] == {"id": agent, "kind": "agent"} and decision["details"]["signature"] == signature
    assert decision["details"]["signature_status"] == "verified"

    # above the limit: the CFO (human) approves step 2, the agent is refused on step 3, the manager decides
    _, above = await world.call("POST", f"{I}?wait=true", tenant, "requester", json={
        "template_id": template_id, "trigger_data": {"id": "tr_big", "amount": 5000}}, expect=201)
    await world.call("POST", f"{I}/{above['id']}/steps/2/approve?wait=true", tenant, "cfo",
                     json={"reasoning": "strategic vendor"}, expect=200)
    await wait_blocked_at(world, tenant, above["id"], 3)
    _, pending = await world.call("GET", "/v1/workflows/pending", tenant, "agent", expect=200)
    assert above["id"] not in [p["instance_id"] for p in pending["items"]]
    status, problem = await world.call("POST", f"{I}/{above['id']}/steps/3/approve?wait=true", tenant, "agent",
                                       json={"reasoning": "looks routine"})
    assert status == 409 and "above" in problem["detail"] and "approval limit" in problem["detail"]
    await world.call("POST", f"{I}/{above['id']}/steps/3/approve?wait=true", tenant, "manager",
                     json={"reasoning": "checked the contract"}, expect=200)
    await world.play_action_handler(above["id"], 4)
    done = await world.wait_instance(tenant, above["id"], lambda b: b["status"] == "COMPLETED")
    votes = [(t["actor"]["kind"], t["reasoning"]) for t in done["timeline"] if t["event_type"] == "DecisionRecorded"]
    assert votes == [("human", "strategic vendor"), ("human", "checked the contract")]
    refusal = next(t for t in done["timeline"] if t["event_type"] == "CommandRejected")
    assert "approval limit" in refusal["reasoning"]
    assert next(s for s in done["steps"] if s["step"] == 3)["approved_by_agent_id"] is None


async def test_agent_initiates_with_context_but_cannot_approve_its_own_instance(e2e_world):
    world = e2e_world
    tenant = await world.new_tenant()
    agent = tenant.ids["agent"]
    _, template = await world.call("POST", "/v1/workflows/templates", tenant,
                                   json=builtin_template("procurement_approval"), expect=201)
    status, _ = await world.call("POST", I, tenant, "agent", json={"template_id": template["id"]})
    assert status == 403  # no can_initiate yet
    await world.call("POST", f"/v1/agents/{agent}/workflow-permissions", tenant, json={"workflow_permissions": {
        "can_initiate": [template["id"]], "can_approve": {template["id"]: {"max_amount": None, "step_names": []}}}},
        expect=200)
    _, started = await world.call("POST", f"{I}?wait=true", tenant, "agent", json={
        "template_id": template["id"], "trigger_data": {"transfer_id": "txn_123", "amount": 500},
        "agent_context": {"intent": "Process vendor payment", "conversation_id": "conv_789"}}, expect=201)
    assert started["initiated_by"] == {"id": agent, "kind": "agent"}
    assert started["agent_context"] == {"intent": "Process vendor payment", "conversation_id": "conv_789",
                                        "agent_id": agent}
    await wait_blocked_at(world, tenant, started["id"], 3)
    status, problem = await world.call("POST", f"{I}/{started['id']}/steps/3/approve?wait=true", tenant, "agent",
                                       json={"reasoning": "self-approval"})
    assert status == 409 and "cannot approve" in problem["detail"]
    _, advanced = await world.call("POST", f"{I}/{started['id']}/advance?wait=true", tenant, "agent",
                                   json={"action": "proceed_if_ready"}, expect=200)
    check = [t for t in advanced["timeline"] if t["event_type"] == "AdvanceChecked"][-1]
    assert check["actor"]["kind"] == "agent" and "waits for approval" in check["reasoning"]
