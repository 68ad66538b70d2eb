"""Agents drive the procurement workflow through `flowline mcp`, over stdio and over streamable HTTP, with the
MCP SDK's own client: the intake agent starts it (agent_context with intent and conversation), the human CFO
approves over REST, the approver agent approves the manager step within its limit and the instance
completes; above its limit the approval comes back as a tool error (isError) with the engine's reason, and a
human finishes. Every call goes through the gateway with the agent's token."""

from __future__ import annotations

import base64
import logging
import time
import uuid
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from mcp import Client
from mcp.shared.exceptions import MCPError

from core.agent_signing import canonical_decision
from tests.integration.mcp.conftest import APPROVER_LIMIT, Connect, McpWorld

pytestmark = pytest.mark.asyncio(loop_scope="session")


EXPECTED_TOOLS = {
    "flowline_list_templates": True, "flowline_describe_template": True, "flowline_get_instance": True,
    "flowline_list_my_pending_approvals": True, "flowline_list_available_actions": True,
    "flowline_explain_refusal": True, "flowline_start_workflow": False, "flowline_approve_step": False,
    "flowline_reject_step": False, "flowline_advance_instance": False, "flowline_complete_external_step": False,
    "flowline_list_transitions": True, "flowline_request_transition": False,
}  # name -> read-only


def text_of(result: Any) -> str:
    return "\n".join(getattr(c, "text", "") for c in result.content)


async def ok(client: Client, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, f"{tool} failed: {text_of(result)}"
    assert result.structured_content is not None
    return result.structured_content


async def start_and_pass_the_cfo(w: McpWorld, connect: Connect, amount: float, conversation: str) -> str:
    """The intake agent starts the workflow through MCP; the CFO approves step 2 over REST."""
    async with connect(w.intake_token, conversation) as intake:
        started = await ok(intake, "flowline_start_workflow", {
            "template_id": w.template_id, "intent": "Pay ACME invoice INV-88",
            "trigger_data": {"amount": amount, "currency": "USD", "vendor": "ACME"}})
        instance_id = started["instance_id"]
        assert started["conversation_id"] == conversation
        async with w.rest("viewer") as viewer:
            await viewer.wait_for_instance(instance_id, lambda i: i.current_step == 2 and
                                           i.blocking.get("waiting_for") == "approval")
        seen = await ok(intake, "flowline_get_instance", {"instance_id": instance_id})
        assert seen["status"] == "ACTIVE" and seen["current_step"] == 2
        assert "step 2 (CFO Approval) waits for approval" in seen["blocking_in_words"]
        assert "role cfo" in seen["blocking_in_words"] and "waiting for" in seen["blocking_in_words"]
        assert seen["agent_context"]["agent_id"] == w.intake_id
        assert seen["agent_context"]["conversation_id"] == conversation
        assert seen["agent_context"]["intent"] == "Pay ACME invoice INV-88"
    async with w.rest("cfo") as cfo:
        await cfo.approve(instance_id, 2, "within the Q3 budget", wait=True)
        await cfo.wait_for_instance(instance_id, lambda i: i.current_step == 3 and
                                    i.blocking.get("waiting_for") == "approval")
    return instance_id


async def finish(w: McpWorld, instance_id: str) -> Any:
    await w.world.play_action_handler(instance_id, 4, {"status": "executed"})
    async with w.rest("viewer") as viewer:
        return await viewer.wait_for_instance(instance_id)


async def test_tool_list_and_schemas(connect: Connect, mcp_world: McpWorld):
    async with connect(mcp_world.approver_token, "conv-schema") as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert set(tools) == set(EXPECTED_TOOLS)
        for name, read_only in EXPECTED_TOOLS.items():
            tool = tools[name]
            assert tool.description and len(tool.description) > 80, name
            assert tool.annotations is not None and tool.annotations.read_only_hint is read_only, name
            assert tool.output_schema is not None, name
        approve = tools["flowline_approve_step"].input_schema
        assert set(approve["required"]) == {"instance_id", "step", "reasoning"}
        assert approve["properties"]["step"]["minimum"] == 1
        assert "agent_signature" in approve["properties"] and "idempotency_key" in approve["properties"]
        assert tools["flowline_approve_step"].annotations.destructive_hint is True
        complete = tools["flowline_complete_external_step"].input_schema
        assert complete["properties"]["status"]["enum"] == ["completed", "failed"]
        start = tools["flowline_start_workflow"].input_schema
        assert set(start["required"]) == {"template_id", "intent"}
        assert "amount" in start["properties"]["trigger_data"]["description"]
        assert {p.name for p in (await client.list_prompts()).prompts} == {
            "review_pending_approvals", "why_is_instance_stuck"}
        templates = {t.uri_template for t in (await client.list_resource_templates()).resource_templates}
        assert templates == {"flowline://templates/{template_id}", "flowline://instances/{instance_id}"}
        described = await ok(client, "flowline_describe_template", {"template_id": mcp_world.template_id})
        assert described["steps_in_words"][1] == ('step 2 "CFO Approval": approval by role cfo, SINGLE, 48 h '
                                                  'timeout then fail')
        listed = await ok(client, "flowline_list_templates", {"status": "ACTIVE"})
        assert mcp_world.template_id in [t["id"] for t in listed["templates"]]


async def test_agent_approves_within_its_limit_to_completion(connect: Connect, mcp_world: McpWorld,
                                                              caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO, logger="flowline.gateway.audit")
    w = mcp_world
    conversation = f"conv-{uuid.uuid4().hex[:8]}"
    instance_id = await start_and_pass_the_cfo(w, connect, 2500, conversation)
    async with connect(w.approver_token, conversation) as approver:
        pending = await ok(approver, "flowline_list_my_pending_approvals", {})
        mine = [p for p in pending["pending"] if p["instance_id"] == instance_id]
        assert [(p["step"], p["step_name"], p["amount"]) for p in mine] == [(3, "Manager Approval", 2500)]
        actions = await ok(approver, "flowline_list_available_actions", {"instance_id": instance_id})
        assert {"action": "approve", "step": 3, "tool": "flowline_approve_step"}.items() <= \
            next(a for a in actions["actions"] if a["action"] == "approve").items()
        decided = await ok(approver, "flowline_approve_step", {
            "instance_id": instance_id, "step": 3, "reasoning": "Invoice matches the PO; within my limit"})
        assert decided["instance_id"] == instance_id and decided["conversation_id"] == conversation
    done = await finish(w, instance_id)
    assert done.status == "COMPLETED"
    assert [s.status for s in done.steps] == ["COMPLETED", "APPROVED", "APPROVED", "COMPLETED"]
    trail = [(t.event_type, t.step, t.actor.id, t.actor.kind, t.reasoning) for t in done.timeline]
    assert ("DecisionRecorded", 3, w.approver_id, "agent",
            f"Invoice matches the PO; within my limit [conversation {conversation}]") in trail
    assert done.initiated_by.id == w.intake_id and done.initiated_by.kind == "agent"
    assert done.step(3).approved_by_agent_id == w.approver_id
    audit = [r.getMessage() for r in caplog.records if r.name == "flowline.gateway.audit"]
    for line in (f"POST /v1/workflows/instances principal={w.intake_id} kind=agent conversation={conversation} "
                 "client=flowline-mcp/",
                 f"POST /v1/workflows/instances/{instance_id}/steps/3/approve principal={w.approver_id} kind=agent "
                 f"conversation={conversation} client=flowline-mcp/"):
        assert any(m.startswith(line) for m in audit), (line, audit)


async def test_agent_above_its_limit_gets_a_tool_error_and_a_human_finishes(connect: Connect, mcp_world: McpWorld):
    w = mcp_world
    conversation = f"conv-{uuid.uuid4().hex[:8]}"
    instance_id = await start_and_pass_the_cfo(w, connect, 7500, conversation)
    async with connect(w.approver_token, conversation) as approver:
        refused = await approver.call_tool("flowline_approve_step", {
            "instance_id": instance_id, "step": 3, "reasoning": "Looks fine to me"})
        assert refused.is_error
        text = text_of(refused)
        assert "409 Command rejected" in text
        assert f"amount 7500 is above {w.approver_id}'s approval limit of {APPROVER_LIMIT}" in text
        assert "next step:" in text and "Traceback" not in text
        explained = await ok(approver, "flowline_explain_refusal", {"instance_id": instance_id})
        assert f"approval limit of {APPROVER_LIMIT}" in explained["explanation"]
        assert explained["last_error"]["status"] == 409
        assert any("RecordDecision" in r or "refused" in r for r in explained["engine_refusals"])
        still = await ok(approver, "flowline_get_instance", {"instance_id": instance_id})
        assert still["status"] == "ACTIVE" and still["current_step"] == 3
        assert any(f"approval limit of {APPROVER_LIMIT}" in r for r in still["refusals"])
    # the step escalated to the humans with the agent's recommendation and reasoning in their pending list
    _, pending = await w.world.call("GET", "/v1/workflows/pending", w.tenant, "manager", expect=200)
    item, = [p for p in pending["items"] if p["instance_id"] == instance_id]
    note, = item["agent_recommendations"]
    assert (note["agent_id"], note["decision"]) == (w.approver_id, "approve")
    assert note["reasoning"] == f"Looks fine to me [conversation {conversation}]"
    assert f"approval limit of {APPROVER_LIMIT}" in note["refusal"]
    async with connect(w.intake_token, conversation) as intake:  # the initiator may not approve its own request
        own = await intake.call_tool("flowline_approve_step", {
            "instance_id": instance_id, "step": 3, "reasoning": "I started it, so I approve it"})
        assert own.is_error and f"{w.intake_id} started this instance and cannot approve it" in text_of(own)
    async with w.rest("manager") as manager:
        await manager.approve(instance_id, 3, "above the agent's limit; checked by hand", wait=True)
    done = await finish(w, instance_id)
    assert done.status == "COMPLETED"
    assert done.step(3).approved_by == [w.tenant.ids["manager"]]


async def test_unknown_instance_is_a_tool_error_and_the_server_keeps_serving(connect: Connect, mcp_world: McpWorld):
    async with connect(mcp_world.approver_token, "conv-unknown") as client:
        missing = await client.call_tool("flowline_get_instance", {"instance_id": "wi_does_not_exist"})
        assert missing.is_error
        assert "404 Not found" in text_of(missing) and "wi_does_not_exist" in text_of(missing)
        assert "Traceback" not in text_of(missing)
        bad = await client.call_tool("flowline_approve_step", {"instance_id": "x", "step": 0, "reasoning": "no"})
        assert bad.is_error  # the input schema (step >= 1, reasoning >= 3 chars), before any call
        again = await ok(client, "flowline_list_my_pending_approvals", {"limit": 5})
        assert again["count"] == len(again["pending"])


async def test_resources_and_prompts(connect: Connect, mcp_world: McpWorld):
    w = mcp_world
    async with connect(w.intake_token, "conv-resources") as intake:
        started = await ok(intake, "flowline_start_workflow", {
            "template_id": w.template_id, "intent": "resource check", "trigger_data": {"amount": 10}})
        instance_id = started["instance_id"]
        template = await intake.read_resource(f"flowline://templates/{w.template_id}")
        text = template.contents[0].text
        assert 'step 3 "Manager Approval": approval by role finance_manager, SINGLE, 24 h timeout then fail' in text
        async with w.rest("viewer") as viewer:
            await viewer.wait_for_instance(instance_id, lambda i: i.current_step == 3)
        instance = await intake.read_resource(f"flowline://instances/{instance_id}")
        assert f'"id": "{instance_id}"' in instance.contents[0].text
        assert "Manager Approval" in instance.contents[0].text
        prompt = await intake.get_prompt("why_is_instance_stuck", {"instance_id": instance_id})
        assert instance_id in prompt.messages[0].content.text
        review = await intake.get_prompt("review_pending_approvals")
        assert "flowline_list_my_pending_approvals" in review.messages[0].content.text


async def test_http_without_a_token_is_refused_as_a_protocol_error(mcp_world: McpWorld, mcp_http: str):
    async with mcp_world.http(mcp_http, None) as client:
        with pytest.raises(MCPError) as refused:
            await client.call_tool("flowline_list_my_pending_approvals", {})
        assert "Authorization: Bearer" in str(refused.value)
    async with mcp_world.http(mcp_http, "fl_not_a_token") as client:
        with pytest.raises(MCPError) as unknown:
            await client.call_tool("flowline_list_my_pending_approvals", {})
        assert "unknown or revoked" in str(unknown.value)


async def test_a_human_token_sees_the_same_rules(mcp_world: McpWorld):
    """The server acts as whoever the token is: a viewer's approval is refused by the gateway (403)."""
    async with mcp_world.stdio(mcp_world.tenant.tokens["viewer"]) as viewer:
        refused = await viewer.call_tool("flowline_start_workflow", {
            "template_id": mcp_world.template_id, "intent": "viewers cannot start"})
        assert refused.is_error and "403 Forbidden" in text_of(refused) and "do not retry" in text_of(refused)


async def test_a_signed_approval_through_mcp_is_verified_in_the_audit_trail(connect: Connect, mcp_world: McpWorld):
    w = mcp_world
    key = Ed25519PrivateKey.generate()
    public = base64.b64encode(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()
    await w.world.call("PUT", f"/v1/agents/{w.approver_id}/public-key", w.tenant, json={"public_key": public},
                       expect=200)
    conversation = f"conv-{uuid.uuid4().hex[:8]}"
    instance_id = await start_and_pass_the_cfo(w, connect, 1200, conversation)
    reasoning = "Signed: invoice matches the PO"
    at = int(time.time())

    def signature(text: str) -> str:
        message = canonical_decision(instance_id=instance_id, step=3, attempt=1, decision="approve",
                                     reasoning=text, timestamp=at)
        return base64.b64encode(key.sign(message)).decode()

    async with connect(w.approver_token, conversation) as approver:
        forged = await approver.call_tool("flowline_approve_step", {
            "instance_id": instance_id, "step": 3, "reasoning": reasoning,
            "agent_signature": signature("something else"), "signed_at": at})
        assert forged.is_error and "agent_signature does not match" in text_of(forged)
        await ok(approver, "flowline_approve_step", {"instance_id": instance_id, "step": 3, "reasoning": reasoning,
                                                     "agent_signature": signature(reasoning), "signed_at": at})
    done = await finish(w, instance_id)
    vote, = [t for t in done.timeline if t.event_type == "DecisionRecorded" and t.step == 3]
    assert vote.reasoning == reasoning and vote.details["signature_status"] == "verified"
    assert vote.details["agent_context"] == {"agent_id": w.approver_id, "conversation_id": conversation}
