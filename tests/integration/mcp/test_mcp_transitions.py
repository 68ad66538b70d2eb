"""State-machine transitions through `flowline mcp` (issue 13/14 residual): an agent lists the transitions of
an instance and requests one, under the rules people follow: one of the transition's roles, separation of
duties, and on a role-restricted transition its approval bounds for the template (here max_amount 1000).
Refusals come back as tool errors with the engine's reason; the audit trail records the agent and its
reasoning with the conversation."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from tests.integration.mcp.conftest import Connect, McpWorld, _add_agent, _permissions
from tests.integration.mcp.test_mcp_agent import ok, text_of

pytestmark = pytest.mark.asyncio(loop_scope="session")

GATED = {"trigger_type": "manual",
         "states": [{"name": "review"}, {"name": "approved", "terminal": "COMPLETED"},
                    {"name": "rejected", "terminal": "FAILED"}],
         "transitions": [{"from": "review", "to": "approved", "roles": ["compliance_officer"]},
                         {"from": "review", "to": "rejected", "roles": ["compliance_officer"]}]}


async def _officer(w: McpWorld, template_id: str) -> tuple[str, str]:
    """An agent with the compliance_officer role and can_approve up to 1000 on the template."""
    officer_id, token = await _add_agent(w.world.database_url, w.tenant, f"officer_{uuid.uuid4().hex[:6]}")
    conn = await asyncpg.connect(w.world.database_url)
    try:
        await conn.execute("UPDATE principals SET roles = '{agent,compliance_officer}' WHERE id = $1", officer_id)
    finally:
        await conn.close()
    async with w.rest("admin") as admin:
        await admin.call(_permissions(officer_id, can_approve={template_id: {"max_amount": 1000}}))
    return officer_id, token


async def test_an_agent_requests_a_role_restricted_transition_within_its_bounds(connect: Connect,
                                                                                 mcp_world: McpWorld):
    w = mcp_world
    async with w.rest("admin") as admin:
        template = await admin.create_template({**GATED, "name": f"Gated review {uuid.uuid4().hex[:6]}"})
    await w.world.engine_knows(template.id)
    officer_id, officer_token = await _officer(w, template.id)
    async with w.rest("requester") as requester:
        big = (await requester.start_instance(template.id, {"amount": 5000, "currency": "USD"}, wait=True)).raw["id"]
        small = (await requester.start_instance(template.id, {"amount": 500, "currency": "USD"}, wait=True)).raw["id"]
        async with w.rest("viewer") as viewer:
            for iid in (big, small):
                await viewer.wait_for_instance(iid, lambda i: i.raw.get("machine_state") == "review")

    async with connect(officer_token, "conv-transitions") as officer:
        listed = await ok(officer, "flowline_list_transitions", {"instance_id": big})
        assert listed["state"] == "review"
        approved = next(t for t in listed["transitions"] if t["to"] == "approved")
        assert not approved["available"] and "above" in approved["why_not"] and "1000" in approved["why_not"]
        refused = await officer.call_tool("flowline_request_transition", {
            "instance_id": big, "target_state": "approved", "reasoning": "documents look complete"})
        assert refused.is_error and "approval limit of 1000" in text_of(refused)

        listed = await ok(officer, "flowline_list_transitions", {"instance_id": small})
        assert next(t for t in listed["transitions"] if t["to"] == "approved")["available"]
        moved = await ok(officer, "flowline_request_transition", {
            "instance_id": small, "target_state": "approved", "reasoning": "KYC documents verified"})
        assert moved["instance_id"] == small and moved["conversation_id"] == "conv-transitions"

    async with connect(w.approver_token, "conv-no-role") as no_role:  # an agent without the role
        refused = await no_role.call_tool("flowline_request_transition", {
            "instance_id": big, "target_state": "rejected", "reasoning": "I reject it"})
        assert refused.is_error and "role missing: needs one of compliance_officer" in text_of(refused)

    async with w.rest("viewer") as viewer:
        done = await viewer.wait_for_instance(small, lambda i: i.status == "COMPLETED")
        still = await viewer.get_instance(big)
    assert still.raw["machine_state"] == "review" and still.status == "ACTIVE"
    taken = [t for t in done.raw["timeline"] if t["event_type"] == "TransitionTaken" and t["actor"]["id"] == officer_id]
    assert len(taken) == 1 and taken[0]["actor"]["kind"] == "agent"
    assert taken[0]["reasoning"] == "KYC documents verified [conversation conv-transitions]"
