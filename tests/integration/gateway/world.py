"""A whole Flowline on the real broker and database, in one process, for API tests.

`ApiWorld` runs an engine (`EngineWorld`, on its own topic prefix), the projector (its own consumer group)
and the gateway (aiohttp test server) against the test stack. Tests isolate themselves by tenant:
`await world.new_tenant()` inserts principals and API tokens for a fresh tenant id.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient, TestServer

from core import events as ev
from core.commands import ReportStepResult
from gateway.app import build_app, server_options, start_gateway, stop_gateway
from gateway.auth import hash_token, new_token
from gateway.calls import Gateway
from gateway.settings import GatewaySettings
from schemas import topics
from store.projector import Projector
from tests.integration.engine_harness import EngineWorld

# name -> (kind, roles)
PRINCIPALS: dict[str, tuple[str, tuple[str, ...]]] = {
    "admin": ("human", ("admin",)),
    "operator": ("human", ("operator",)),
    "requester": ("human", ("requester",)),
    "integration": ("human", ("integration",)),
    "viewer": ("human", ("viewer",)),
    "cfo": ("human", ("cfo",)),
    "manager": ("human", ("finance_manager",)),
    "agent": ("agent", ()),
}


@dataclass
class Tenant:
    id: str
    tokens: dict[str, str] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)

    def auth(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[name]}"}


async def insert_tenant(database_url: str, tenant_id: str | None = None) -> Tenant:
    tenant = Tenant(id=tenant_id or f"ten_{uuid.uuid4().hex[:10]}")
    conn = await asyncpg.connect(database_url)
    try:
        for name, (kind, roles) in PRINCIPALS.items():
            principal_id = f"{tenant.id}_{name}"
            token = new_token()
            await conn.execute("INSERT INTO principals (id, tenant_id, kind, display_name, roles) "
                               "VALUES ($1, $2, $3, $4, $5)", principal_id, tenant.id, kind, name, list(roles))
            await conn.execute("INSERT INTO api_tokens (token_hash, principal_id, name) VALUES ($1, $2, 'test')",
                               hash_token(token), principal_id)
            tenant.tokens[name] = token
            tenant.ids[name] = principal_id
    finally:
        await conn.close()
    return tenant


@dataclass
class ApiWorld:
    engine: EngineWorld
    database_url: str
    projector: Projector | None = None
    gateway: Gateway | None = None
    client: TestClient | None = None
    _tasks: list[asyncio.Task] = field(default_factory=list)

    @property
    def settings(self) -> GatewaySettings:
        return GatewaySettings(bootstrap_servers=self.engine.bootstrap, database_url=self.database_url,
                               topic_prefix=self.engine.prefix, projector_group=self.projector_group,
                               wait_seconds=15, instance_wait_seconds=1)

    @property
    def projector_group(self) -> str:
        return f"projector-{self.engine.prefix.rstrip('.')}"

    async def start(self) -> ApiWorld:
        await self.engine.start_engine()
        self.projector = Projector(bootstrap_servers=self.engine.bootstrap, database_url=self.database_url,
                                   topic_prefix=self.engine.prefix, group_id=self.projector_group)
        self._tasks.append(asyncio.create_task(self.projector.run()))
        self.gateway = await start_gateway(self.settings)
        server = TestServer(build_app(self.gateway))
        await server.start_server(**server_options(self.gateway.settings))  # the production server options
        self.client = TestClient(server)
        await self.client.start_server()
        await asyncio.wait_for(self.projector.ready.wait(), 30)
        return self

    async def pause_projector(self) -> None:
        """Stop the projector (its committed offsets stay): the read model lags until `resume_projector`."""
        assert self.projector is not None
        self.projector.stop()
        task = self._tasks.pop()
        await asyncio.wait_for(task, 30)

    async def resume_projector(self) -> None:
        self.projector = Projector(bootstrap_servers=self.engine.bootstrap, database_url=self.database_url,
                                   topic_prefix=self.engine.prefix, group_id=self.projector_group)
        self._tasks.append(asyncio.create_task(self.projector.run()))
        await asyncio.wait_for(self.projector.ready.wait(), 30)

    async def stop(self) -> None:
        if self.client is not None:
            await self.client.close()
        if self.gateway is not None:
            await stop_gateway(self.gateway)
        if self.projector is not None:
            self.projector.stop()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(task, 10)

    async def new_tenant(self) -> Tenant:
        return await insert_tenant(self.database_url)

    # ------------------------------------------------------------------ API helpers
    async def call(self, method: str, path: str, tenant: Tenant | None = None, who: str = "admin",
                   expect: int | tuple[int, ...] | None = None, **kwargs: Any) -> tuple[int, Any]:
        assert self.client is not None
        headers = {**(tenant.auth(who) if tenant else {}), **kwargs.pop("headers", {})}
        response = await self.client.request(method, path, headers=headers, **kwargs)
        text = await response.text()
        try:
            import json

            body = json.loads(text) if text else None
        except ValueError:
            body = text
        if expect is not None:
            wanted = expect if isinstance(expect, tuple) else (expect,)
            assert response.status in wanted, f"{method} {path} -> {response.status}: {text}"
        return response.status, body

    async def wait_instance(self, tenant: Tenant, instance_id: str, predicate, timeout: float = 30,
                            who: str = "admin") -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        body: Any = None
        while time.monotonic() < deadline:
            status, body = await self.call("GET", f"/v1/workflows/instances/{instance_id}", tenant, who)
            if status == 200 and predicate(body):
                return body
            await asyncio.sleep(0.1)
        raise AssertionError(f"instance {instance_id} did not reach the expected state; last: {body}\n"
                             f"{self.engine.log_text(instance_id)}")

    async def engine_knows(self, template_id: str, version: int = 1) -> None:
        """Wait until the engine's template catalog has read the version the gateway published (a transfer
        event that arrives before its template is known matches nothing, by design)."""
        engines = self.engine._engines
        await self.engine.wait_until(lambda: all(e.catalog.get(template_id, version) for e in engines),
                                     message=f"engine catalog has {template_id} v{version}")

    async def play_action_handler(self, instance_id: str, step: int, output: dict[str, Any] | None = None, *,
                                  error: str = "") -> None:
        """Stand in for the payment service (and its relay) or the action handler: answer the step's payment
        order, or its handler request, with a success (the real ones run as their own processes; these tests
        keep the API's behaviour independent of them). The engine orders payments itself (docs/adr/0023).
        With `error`: a final refusal instead (the payment service's, or a non-retryable handler failure)."""
        engine = self.engine
        requested = lambda: [r for r in engine.requests.get(instance_id, []) if r.step == step]  # noqa: E731
        await engine.wait_until(lambda: engine.orders_for(instance_id, step) or requested(),
                                message=f"step {step} of {instance_id} asking")
        outcome = "failed" if error else "succeeded"
        output = None if error else output or {"status": "executed"}
        if engine.orders_for(instance_id, step):
            await engine.pay(instance_id, step, outcome, output=output, error=error)
        else:
            request = requested()[0]
            await engine.send_command(ReportStepResult(
                command_id=f"result:{request.request_id}", instance_id=instance_id, step=step,
                attempt=request.attempt, outcome=outcome, output=output, error=error, retryable=False),
                topic=topics.WORKFLOW_STEP_RESULTS)
        await engine.wait_for_event(instance_id, ev.StepFailed if error else ev.StepSucceeded, step=step)


@contextlib.asynccontextmanager
async def running_world(kafka_bootstrap: str, database_url: str):
    """A whole Flowline (engine, projector, gateway) on fresh topics, stopped on exit."""
    async with EngineWorld(kafka_bootstrap) as engine:
        world = await ApiWorld(engine=engine, database_url=database_url).start()
        try:
            yield world
        finally:
            await world.stop()
