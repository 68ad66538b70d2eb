"""MCP read calls are audited durably (issue 14 residual): every API call an agent makes through `flowline mcp`,
reads included, is a row of `agent_access_log` with the operation, status, conversation and client, readable by
an admin (and by the agent itself) at GET /v1/agents/{id}/access-log; before, a read left only a line in the
gateway's process log."""

from __future__ import annotations

import uuid

import pytest

from tests.integration.mcp.conftest import Connect, McpWorld
from tests.integration.mcp.test_mcp_agent import ok

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_an_agents_mcp_reads_are_in_its_access_log(connect: Connect, mcp_world: McpWorld):
    w = mcp_world
    conversation = f"conv-audit-{uuid.uuid4().hex[:6]}"
    async with w.rest("requester") as requester:
        started = await requester.start_instance(w.template_id, {"amount": 2500, "currency": "USD"}, wait=True)
    instance_id = started.raw["id"]
    async with connect(w.approver_token, conversation) as agent:
        await ok(agent, "flowline_get_instance", {"instance_id": instance_id})
        await ok(agent, "flowline_list_my_pending_approvals", {})
        missing = await agent.call_tool("flowline_get_instance", {"instance_id": "wfi_not_there"})
        assert missing.is_error

    url = f"/v1/agents/{w.approver_id}/access-log?conversation_id={conversation}"
    status, log = await w.world.call("GET", url, w.tenant, "admin")
    assert status == 200
    calls = [(i["operation"], i["method"], i["path"], i["status"]) for i in reversed(log["items"])]
    assert calls == [("getInstance", "GET", f"/v1/workflows/instances/{instance_id}", 200),
                     ("listPending", "GET", "/v1/workflows/pending", 200),
                     ("getInstance", "GET", "/v1/workflows/instances/wfi_not_there", 404)]
    assert {i["conversation_id"] for i in log["items"]} == {conversation}
    assert all(i["client"].startswith("flowline-mcp/") for i in log["items"])

    status, own = await w.world.call("GET", url, w.tenant, "agent")  # the approver agent reads its own
    assert status == 200 and len(own["items"]) == 3
    status, page = await w.world.call("GET", f"{url}&limit=2", w.tenant, "admin")
    assert [i["path"] for i in page["items"]] == [c[2] for c in reversed(calls)][:2] and page["next_cursor"]
    status, rest = await w.world.call("GET", f"{url}&limit=2&cursor={page['next_cursor']}", w.tenant, "admin")
    assert [i["status"] for i in rest["items"]] == [200] and rest["next_cursor"] is None
    status, _ = await w.world.call("GET", url, w.tenant, "viewer")
    assert status == 403
