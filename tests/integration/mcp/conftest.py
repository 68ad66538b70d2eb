"""A whole Flowline for the MCP tests: engine, projector and gateway on fresh topics (`running_world`), a fresh
tenant with its principals, the built-in procurement template created through the REST API, and two agents:
`intake` (may start it) and `approver` (may approve its "Manager Approval" step up to 5000; the seed's
agent_456 has the story's limit of 1000). Two agents because the core keeps an initiator from approving its
own instance. `flowline mcp` runs as a real subprocess (stdio or streamable HTTP) against the gateway's test
server, so every call goes through the gateway's HTTP API with the agent's token.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx2
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from core.builtin import builtin_template
from flowline.client import AsyncClient
from gateway.auth import hash_token, new_token
from tests.integration.gateway.world import ApiWorld, Tenant, insert_tenant, running_world

ROOT = Path(__file__).resolve().parents[3]
APPROVER_LIMIT = 5000


@dataclass
class McpWorld:
    world: ApiWorld
    tenant: Tenant
    url: str
    template_id: str
    intake_token: str
    approver_token: str
    approver_id: str
    intake_id: str

    def rest(self, who: str) -> AsyncClient:
        return AsyncClient(self.url, self.tenant.tokens[who])

    @contextlib.asynccontextmanager
    async def stdio(self, token: str, conversation: str | None = None) -> AsyncIterator[Client]:
        """`flowline mcp` spawned over stdio (the way a desktop MCP client runs it), with FLOWLINE_URL and
        FLOWLINE_TOKEN in its environment; its stderr goes to a temporary file shown on failure."""
        env = {"FLOWLINE_URL": self.url, "FLOWLINE_TOKEN": token, "PYTHONPATH": str(ROOT)}
        if conversation:
            env["FLOWLINE_CONVERSATION_ID"] = conversation
        params = StdioServerParameters(command=sys.executable, args=["-m", "deploy.cli", "mcp"], env=env, cwd=ROOT)
        with tempfile.TemporaryFile("w+") as errlog:
            try:
                async with Client(stdio_client(params, errlog=errlog)) as client:
                    yield client
            except BaseException:
                errlog.seek(0)
                print("flowline mcp (stdio) stderr:\n" + errlog.read()[-4000:], file=sys.stderr)
                raise

    @contextlib.asynccontextmanager
    async def http(self, endpoint: str, token: str | None, conversation: str | None = None) -> AsyncIterator[Client]:
        """The MCP SDK's client over streamable HTTP, sending the agent's bearer token itself."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if conversation:
            headers["X-Flowline-Conversation-Id"] = conversation
        async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=300)) as http_client, \
                Client(streamable_http_client(endpoint, http_client=http_client)) as client:
            yield client


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _add_agent(database_url: str, tenant: Tenant, name: str) -> tuple[str, str]:
    principal_id, token = f"{tenant.id}_{name}", new_token()
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("INSERT INTO principals (id, tenant_id, kind, display_name, roles) VALUES "
                           "($1, $2, 'agent', $3, '{}')", principal_id, tenant.id, f"{name} agent")
        await conn.execute("INSERT INTO api_tokens (token_hash, principal_id, name) VALUES ($1, $2, 'mcp test')",
                           hash_token(token), principal_id)
    finally:
        await conn.close()
    return principal_id, token


@pytest.fixture(scope="package")
async def mcp_world(kafka_bootstrap: str, database_url: str):
    async with running_world(kafka_bootstrap, database_url) as world:
        tenant = await insert_tenant(database_url)
        url = str(world.client.make_url("")).rstrip("/")
        intake_id, intake_token = await _add_agent(database_url, tenant, "intake")
        approver_id, approver_token = tenant.ids["agent"], tenant.tokens["agent"]
        async with AsyncClient(url, tenant.tokens["admin"]) as admin:
            template = await admin.create_template(builtin_template("procurement_approval"))
            await admin.call(_permissions(intake_id, can_initiate=[template.id]))
            await admin.call(_permissions(approver_id, can_approve={
                template.id: {"max_amount": APPROVER_LIMIT, "step_names": ["Manager Approval"]}}))
        await world.engine_knows(template.id)
        yield McpWorld(world, tenant, url, template.id, intake_token, approver_token, approver_id, intake_id)


def _permissions(agent_id: str, **kwargs):
    from flowline.client import operations as ops

    return ops.set_agent_permissions(agent_id, **kwargs)


@pytest.fixture(scope="package")
def mcp_http(mcp_world: McpWorld):
    """`flowline mcp --http` as a subprocess next to the gateway; yields its MCP endpoint URL."""
    port = _free_port()
    log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)  # noqa: SIM115 - read after the process
    env = {**os.environ, "FLOWLINE_URL": mcp_world.url, "PYTHONPATH": str(ROOT)}
    env.pop("FLOWLINE_TOKEN", None)
    process = subprocess.Popen([sys.executable, "-m", "deploy.cli", "mcp", "--http", "--port", str(port)],
                               cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx2.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx2.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                raise AssertionError(f"flowline mcp --http did not come up:\n{log.read()[-4000:]}")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        log.close()
        os.unlink(log.name)


Connect = Callable[[str, str], AbstractAsyncContextManager[Client]]


@pytest.fixture(params=["stdio", "http"])
def connect(request: pytest.FixtureRequest, mcp_world: McpWorld) -> Connect:
    """An MCP client for a token and a conversation, over stdio and (second run) streamable HTTP."""
    if request.param == "stdio":
        return lambda token, conversation: mcp_world.stdio(token, conversation)
    endpoint = request.getfixturevalue("mcp_http")
    return lambda token, conversation: mcp_world.http(endpoint, token, conversation)
