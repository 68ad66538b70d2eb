"""Bounded agents on the real stack (story 29.12, issue 14): signatures verified / absent / invalid, the
per-agent bounds (currency, hours, quorum counting, escalation above the limit), the cross-instance daily
budget under concurrency, and agent_context on every audit entry with the conversation filter."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from core.agent_signing import canonical_decision, canonical_transition
from tests.integration.gateway.test_api import create, manual_procurement

I = "/v1/workflows/instances"  # noqa: E741 (the name test_api.py uses)


async def permit(world, tenant, template_id: str, **conditions) -> dict:
    _, body = await world.call("POST", f"/v1/agents/{tenant.ids['agent']}/workflow-permissions", tenant, json={
        "workflow_permissions": {"can_initiate": [template_id], "can_approve": {template_id: conditions}}},
        expect=200)
    return body


async def start(world, tenant, template_id: str, amount: float, who: str = "requester", **extra) -> str:
    _, started = await world.call("POST", f"{I}?wait=true", tenant, who, expect=201, json={
        "template_id": template_id, "trigger_data": {"amount": amount, **extra.pop("trigger", {})}, **extra})
    await world.wait_instance(tenant, started["id"], lambda b: b["blocking"].get("waiting_for") == "approval")
    return started["id"]


def signed(key: Ed25519PrivateKey, instance_id: str, step: int, decision: str, reasoning: str, *,
           attempt: int = 1, at: int | None = None) -> dict:
    at = int(time.time()) if at is None else at
    message = canonical_decision(instance_id=instance_id, step=step, attempt=attempt, decision=decision,
                                 reasoning=reasoning, timestamp=at)
    return {"reasoning": reasoning, "agent_signature": base64.b64encode(key.sign(message)).decode(),
            "signed_at": at}


async def register_key(world, tenant) -> Ed25519PrivateKey:
    key = Ed25519PrivateKey.generate()
    public = base64.b64encode(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()
    status, _ = await world.call("PUT", f"/v1/agents/{tenant.ids['agent']}/public-key", tenant, "agent",
                                 json={"public_key": public})
    assert status == 403  # an agent may not replace its own key
    _, body = await world.call("PUT", f"/v1/agents/{tenant.ids['agent']}/public-key", tenant,
                               json={"public_key": public}, expect=200)
    assert body["public_key"] == public
    return key


def decisions(detail: dict) -> list[dict]:
    return [t for t in detail["timeline"] if t["event_type"] in ("DecisionRecorded", "AgentRecommendation")]


async def test_signature_verified_absent_and_invalid(api_world, tenant):
    template = await create(api_world, tenant)
    await permit(api_world, tenant, template["id"], max_amount=100_000)
    key = await register_key(api_world, tenant)
    signed_one, absent_one, bad_one = [await start(api_world, tenant, template["id"], 5000) for _ in range(3)]

    # invalid: signed by another key, a changed reasoning, a stale timestamp -> 422, never sent
    other = Ed25519PrivateKey.generate()
    for body, pointer in ((signed(other, bad_one, 2, "approve", "ok"), "/agent_signature"),
                          ({**signed(key, bad_one, 2, "approve", "ok"), "reasoning": "changed"}, "/agent_signature"),
                          (signed(key, bad_one, 2, "approve", "ok", at=int(time.time()) - 3600), "/signed_at"),
                          (signed(key, bad_one, 2, "approve", "ok", attempt=2), "/agent_signature"),
                          ({**signed(key, bad_one, 2, "approve", "ok"), "signed_at": None}, "/signed_at")):
        body = {k: v for k, v in body.items() if v is not None}
        status, problem = await api_world.call("POST", f"{I}/{bad_one}/steps/2/approve?wait=true", tenant, "agent",
                                               json=body)
        assert status == 422 and problem["pointer"] == pointer, problem
        assert problem["title"] == "Invalid agent signature"
    still = await api_world.wait_instance(tenant, bad_one, lambda b: True)
    assert decisions(still) == [] and still["current_step"] == 2

    await api_world.call("POST", f"{I}/{signed_one}/steps/2/approve?wait=true", tenant, "agent",
                         json=signed(key, signed_one, 2, "approve", "invoice matches PO"), expect=200)
    await api_world.call("POST", f"{I}/{absent_one}/steps/2/approve?wait=true", tenant, "agent",
                         json={"reasoning": "unsigned"}, expect=200)
    for iid, status in ((signed_one, "verified"), (absent_one, "absent")):
        detail = await api_world.wait_instance(tenant, iid, lambda b: b["current_step"] == 3)
        vote, = decisions(detail)
        assert vote["details"]["signature_status"] == status and vote["actor"]["kind"] == "agent"


async def test_above_its_limit_the_agent_escalates_and_a_human_decides(api_world, tenant):
    template = await create(api_world, tenant)
    await permit(api_world, tenant, template["id"], max_amount=1000)
    iid = await start(api_world, tenant, template["id"], 5000)
    status, problem = await api_world.call("POST", f"{I}/{iid}/steps/2/approve?wait=true", tenant, "agent",
                                           json={"reasoning": "vendor known, PO matches"})
    assert status == 409 and "above" in problem["detail"] and "recommendation" in problem["detail"], problem
    detail = await api_world.wait_instance(tenant, iid, lambda b: decisions(b))
    note, = decisions(detail)
    assert note["event_type"] == "AgentRecommendation" and note["reasoning"] == "vendor known, PO matches"
    assert "approval limit of 1000" in note["details"]["refusal"] and detail["current_step"] == 2
    _, pending = await api_world.call("GET", "/v1/workflows/pending", tenant, "cfo", expect=200)
    item, = [p for p in pending["items"] if p["instance_id"] == iid]
    assert [(r["agent_id"], r["decision"], r["reasoning"]) for r in item["agent_recommendations"]] == [
        (tenant.ids["agent"], "approve", "vendor known, PO matches")]
    # the agent has had its say: no longer pending for it, and no decision offered
    await permit(api_world, tenant, template["id"], max_amount=10_000)
    _, mine = await api_world.call("GET", "/v1/workflows/pending", tenant, "agent", expect=200)
    assert iid not in [p["instance_id"] for p in mine["items"]]
    status, problem = await api_world.call("POST", f"{I}/{iid}/steps/2/approve?wait=true", tenant, "agent", json={})
    assert status == 409 and "already recommended" in problem["detail"]
    _, after = await api_world.call("POST", f"{I}/{iid}/steps/2/approve?wait=true", tenant, "cfo",
                                    json={"reasoning": "agreed with the agent"}, expect=200)
    assert after["current_step"] == 3


async def test_recommendation_only_agent_currency_and_hours(api_world, tenant):
    template = await create(api_world, tenant)
    await permit(api_world, tenant, template["id"], max_amount=100_000, counts_toward_quorum=False)
    iid = await start(api_world, tenant, template["id"], 5000)
    await api_world.call("POST", f"{I}/{iid}/steps/2/approve?wait=true", tenant, "agent",
                         json={"reasoning": "fine by me"}, expect=200)
    detail = await api_world.wait_instance(tenant, iid, lambda b: decisions(b))
    assert [d["event_type"] for d in decisions(detail)] == ["AgentRecommendation"] and detail["current_step"] == 2

    await permit(api_world, tenant, template["id"], max_amount=100_000, currencies=["USD"])
    eur = await start(api_world, tenant, template["id"], 5000, trigger={"currency": "EUR"})
    _, actions = await api_world.call("GET", f"{I}/{eur}/agent-actions", tenant, "agent", expect=200)
    assert "approve" not in {a["action"] for a in actions["actions"]}  # the core's bound, judged for the offer
    status, problem = await api_world.call("POST", f"{I}/{eur}/steps/2/approve?wait=true", tenant, "agent", json={})
    assert status == 409 and "may only decide in USD, not EUR" in problem["detail"]
    usd = await start(api_world, tenant, template["id"], 5000, trigger={"currency": "USD"})
    _, actions = await api_world.call("GET", f"{I}/{usd}/agent-actions", tenant, "agent", expect=200)
    assert "approve" in {a["action"] for a in actions["actions"]}

    now = time.gmtime()
    closed = f"{(now.tm_hour + 2) % 24:02d}:00-{(now.tm_hour + 3) % 24:02d}:00"  # a window that is not now
    await permit(api_world, tenant, template["id"], max_amount=100_000, hours=[closed])
    late = await start(api_world, tenant, template["id"], 5000)
    status, problem = await api_world.call("POST", f"{I}/{late}/steps/2/approve?wait=true", tenant, "agent", json={})
    assert status == 409 and f"may only decide within {closed} UTC" in problem["detail"]
    status, problem = await api_world.call("POST", f"/v1/agents/{tenant.ids['agent']}/workflow-permissions", tenant,
                                           json={"workflow_permissions": {"can_approve": {
                                               template["id"]: {"hours": ["25:00-26:00"]}}}})
    assert status == 422


async def test_daily_budget_two_concurrent_approvals_exactly_one_passes(api_world, tenant):
    template = await create(api_world, tenant)
    await permit(api_world, tenant, template["id"], max_amount=10_000, daily_budget=8000)
    first, second = [await start(api_world, tenant, template["id"], 5000) for _ in range(2)]
    answers = await asyncio.gather(*(
        api_world.call("POST", f"{I}/{iid}/steps/2/approve?wait=true", tenant, "agent", json={"reasoning": "ok"})
        for iid in (first, second)))
    statuses = sorted(status for status, _ in answers)
    assert statuses == [200, 403], answers
    refused = next(body for status, body in answers if status == 403)
    assert "daily budget of 8000" in refused["detail"]
    # a refusal by the engine gives the reservation back: above its limit nothing is spent
    await permit(api_world, tenant, template["id"], max_amount=1000, daily_budget=8000)
    third = await start(api_world, tenant, template["id"], 2000)
    status, _ = await api_world.call("POST", f"{I}/{third}/steps/2/approve?wait=true", tenant, "agent", json={})
    assert status == 409
    await permit(api_world, tenant, template["id"], max_amount=10_000, daily_budget=8000)
    fourth = await start(api_world, tenant, template["id"], 3000)  # 5000 + 3000 fits exactly
    await api_world.call("POST", f"{I}/{fourth}/steps/2/approve?wait=true", tenant, "agent", json={}, expect=200)


async def test_agent_context_on_every_audit_entry_and_conversation_filter(api_world, tenant):
    doc = manual_procurement()
    doc["settings"] = {"separation_of_duties": False}  # the agent files and later decides its own request
    template = await create(api_world, tenant, doc)
    await permit(api_world, tenant, template["id"], max_amount=100_000)
    conversation = f"conv_{uuid.uuid4().hex[:8]}"
    context = {"intent": "pay vendor invoices", "conversation_id": conversation}
    ids = [await start(api_world, tenant, template["id"], 5000, who="agent", agent_context=context)
           for _ in range(2)]
    await start(api_world, tenant, template["id"], 5000, who="agent",
                agent_context={"conversation_id": "another"})
    _, listed = await api_world.call("GET", f"{I}?conversation_id={conversation}", tenant, "cfo", expect=200)
    assert sorted(i["id"] for i in listed["items"]) == sorted(ids)
    await api_world.call("POST", f"{I}/{ids[0]}/steps/2/approve?wait=true", tenant, "cfo", json={}, expect=200)
    await api_world.call("POST", f"{I}/{ids[0]}/steps/3/reject?wait=true", tenant, "agent",
                         json={"reasoning": "duplicate invoice",
                               "agent_context": {"intent": "dedupe", "conversation_id": conversation}},
                         expect=200)
    detail = await api_world.wait_instance(tenant, ids[0], lambda b: b["status"] == "FAILED")
    caused = [t for t in detail["timeline"] if t["actor"]["id"] == tenant.ids["agent"]
              or t["command_id"] in {d["command_id"] for d in detail["timeline"]
                                     if d["actor"]["id"] == tenant.ids["agent"]}]
    assert len(caused) >= 4  # the start and its steps, the rejection and the instance's failure
    for entry in caused:
        assert entry["details"]["agent_context"]["conversation_id"] == conversation, entry
        assert entry["details"]["agent_context"]["agent_id"] == tenant.ids["agent"]
    # humans' entries carry none
    human = [t for t in detail["timeline"] if t["actor"]["id"] == tenant.ids["cfo"]]
    assert human and all(t["details"].get("agent_context") is None for t in human)


REVIEW_SM = {"name": "Signed review", "trigger_type": "manual",
             "states": [{"name": "review"}, {"name": "done", "terminal": "COMPLETED"}],
             "transitions": [{"from": "review", "to": "done"}]}


def signed_transition(key: Ed25519PrivateKey, instance_id: str, from_state: str, to_state: str, reason: str, *,
                      at: int | None = None) -> dict:
    at = int(time.time()) if at is None else at
    message = canonical_transition(instance_id=instance_id, from_state=from_state, to_state=to_state,
                                   reason=reason, timestamp=at)
    return {"target_state": to_state, "reason": reason, "signed_at": at,
            "agent_signature": base64.b64encode(key.sign(message)).decode()}


async def test_an_agents_transition_request_is_signed_verified_and_audited_with_its_context(api_world, tenant):
    """Issue 13/14 residual: a transition an agent requests carries the same audit as its decisions: the
    agent, its reason, agent_context, and its signature verified (or absent); an invalid one is refused 422."""
    template = await create(api_world, tenant, REVIEW_SM)
    key = await register_key(api_world, tenant)
    ids = []
    for _ in range(3):
        _, started = await api_world.call("POST", f"{I}?wait=true", tenant, "requester", expect=201,
                                          json={"template_id": template["id"]})
        await api_world.wait_instance(tenant, started["id"], lambda b: b.get("machine_state") == "review")
        ids.append(started["id"])
    signed_one, absent_one, bad_one = ids
    other = Ed25519PrivateKey.generate()
    for body, pointer in ((signed_transition(other, bad_one, "review", "done", "ok"), "/agent_signature"),
                          ({**signed_transition(key, bad_one, "review", "done", "ok"), "reason": "changed"},
                           "/agent_signature"),
                          (signed_transition(key, bad_one, "elsewhere", "done", "ok"), "/agent_signature"),
                          (signed_transition(key, bad_one, "review", "done", "ok", at=int(time.time()) - 3600),
                           "/signed_at")):
        status, problem = await api_world.call("POST", f"{I}/{bad_one}/transitions?wait=true", tenant, "agent",
                                               json=body)
        assert status == 422 and problem["pointer"] == pointer, problem
    context = {"conversation_id": "conv-sm-1", "intent": "close the review"}
    await api_world.call("POST", f"{I}/{signed_one}/transitions?wait=true", tenant, "agent", expect=200,
                         json={**signed_transition(key, signed_one, "review", "done", "all checks passed"),
                               "agent_context": context})
    await api_world.call("POST", f"{I}/{absent_one}/transitions?wait=true", tenant, "agent", expect=200,
                         json={"target_state": "done", "reason": "unsigned"})
    for iid, status, expected_context in ((signed_one, "verified", context), (absent_one, "absent", None)):
        detail = await api_world.wait_instance(tenant, iid, lambda b: b["status"] == "COMPLETED")
        taken = [t for t in detail["timeline"] if t["event_type"] == "TransitionTaken"
                 and t["actor"]["id"] == tenant.ids["agent"]]
        assert len(taken) == 1 and taken[0]["actor"]["kind"] == "agent"
        assert taken[0]["details"]["signature_status"] == status
        given = taken[0]["details"]["agent_context"]
        if expected_context is None:
            assert given == {"agent_id": tenant.ids["agent"]}
        else:
            assert given == {**expected_context, "agent_id": tenant.ids["agent"]}
    still = await api_world.wait_instance(tenant, bad_one, lambda b: True)
    assert still["status"] == "ACTIVE" and still["machine_state"] == "review"
