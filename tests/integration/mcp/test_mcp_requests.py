"""What `flowline mcp` sends the gateway for one decision, seen by a recording HTTP endpoint (the SDK's
in-memory MCP client, a real aiohttp server on loopback): the agent's token, the audit headers, the
Idempotency-Key, `?wait=true`, and the body with the reasoning (conversation appended) and the
agent_signature passed through unchanged. The real gateway's handling of the same calls is in
test_mcp_agent.py."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from mcp import Client

from flowline.mcp import McpSettings, build_server
from flowline.mcp.server import VERSION

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_a_decision_carries_token_audit_headers_key_and_signature():
    seen: list[dict[str, Any]] = []

    async def approve(request: web.Request) -> web.Response:
        seen.append({"path": request.path, "query": dict(request.query), "headers": dict(request.headers),
                     "body": await request.json()})
        return web.json_response({"id": request.match_info["id"], "status": "ACTIVE", "current_step": 4,
                                  "blocking": {"waiting_for": "handler", "step": 4, "step_name": "Pay"}, "steps": []})

    app = web.Application()
    app.router.add_post("/v1/workflows/instances/{id}/steps/{n}/approve", approve)
    async with TestServer(app) as gateway:
        server = build_server(McpSettings(url=str(gateway.make_url("")).rstrip("/"), token="fl_agent_token",
                                          conversation_id="conv-from-flag"))
        async with Client(server) as client:
            result = await client.call_tool("flowline_approve_step", {
                "instance_id": "wfi_1", "step": 3, "reasoning": "Invoice matches", "agent_signature": "c2ln",
                "idempotency_key": "key-1"})
            assert not result.is_error, result.content
            assert result.structured_content["conversation_id"] == "conv-from-flag"
            await client.call_tool("flowline_approve_step", {
                "instance_id": "wfi_1", "step": 3, "reasoning": "Second thoughts", "conversation_id": "conv-arg"})

    first, second = seen
    assert first["path"] == "/v1/workflows/instances/wfi_1/steps/3/approve" and first["query"] == {"wait": "true"}
    assert first["headers"]["Authorization"] == "Bearer fl_agent_token"
    assert first["headers"]["User-Agent"] == f"flowline-mcp/{VERSION}"
    assert first["headers"]["X-Flowline-Conversation-Id"] == "conv-from-flag"
    assert first["headers"]["Idempotency-Key"] == "key-1"
    # signed: the reasoning goes exactly as the agent signed it; the conversation rides in agent_context
    assert first["body"] == {"decision": "approved", "reasoning": "Invoice matches", "agent_signature": "c2ln",
                             "agent_context": {"conversation_id": "conv-from-flag"}}
    assert second["headers"]["X-Flowline-Conversation-Id"] == "conv-arg"
    assert "Idempotency-Key" not in second["headers"] and "agent_signature" not in second["body"]
    assert second["body"]["reasoning"] == "Second thoughts [conversation conv-arg]"
    assert second["body"]["agent_context"] == {"conversation_id": "conv-arg"}
