"""A whole Flowline for the SDK and CLI tests: engine, projector and gateway on fresh topics
(`running_world`), the development tenant `acme` of deploy/seed.py (its dev tokens and built-in
templates), the external handler (in this event loop, allowed to call loopback receivers) and a local
HTTP receiver for external steps. The SDK talks to the gateway over real HTTP on its test port.
"""

from __future__ import annotations

import asyncpg
import pytest

from core.builtin import BUILTIN_NAMES
from deploy import seed
from flowline.client import AsyncClient
from gateway.auth import hash_token
from tests.integration.gateway.world import ApiWorld, running_world
from tests.integration.handlers.support import Handlers, Receiver, handler_settings

TOKENS = {p.id: p.token for p in seed.PRINCIPALS}
ADMIN, OPERATOR, CFO, MANAGER, REQUESTER, VIEWER = (TOKENS[k] for k in (
    "acme-admin", "acme-operator", "alice-cfo", "bob-manager", "rita-requester", "vera-viewer"))
CONTROLLER = "fl_test_acme_controller"  # a principal the override test gives the renamed role


class SdkWorld:
    def __init__(self, world: ApiWorld, receiver: Receiver, database_url: str, kafka_bootstrap: str) -> None:
        self.world, self.receiver = world, receiver
        self.database_url, self.kafka_bootstrap = database_url, kafka_bootstrap
        assert world.client is not None
        self.url = str(world.client.make_url("")).rstrip("/")
        self.prefix = world.engine.prefix

    def client(self, token: str = ADMIN) -> AsyncClient:
        return AsyncClient(self.url, token)


async def _add_controller(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("INSERT INTO principals (id, tenant_id, kind, display_name, roles) VALUES "
                           "('acme-controller', 'acme', 'human', 'Carl Controller', $1) ON CONFLICT DO NOTHING",
                           ["controller"])
        await conn.execute("INSERT INTO api_tokens (token_hash, principal_id, name) VALUES ($1, 'acme-controller', "
                           "'sdk test') ON CONFLICT DO NOTHING", hash_token(CONTROLLER))
    finally:
        await conn.close()


@pytest.fixture(scope="package")
async def sdk(kafka_bootstrap: str, database_url: str):
    async with running_world(kafka_bootstrap, database_url) as world, Receiver() as receiver:
        # the SDK drives the built-ins themselves: seed them ACTIVE (the dev seed leaves them inactive)
        await seed.seed(database_url, kafka_bootstrap, topic_prefix=world.engine.prefix, status="ACTIVE")
        for name in BUILTIN_NAMES:
            await world.engine_knows(seed.template_id(name))
        await _add_controller(database_url)
        handlers = Handlers()
        await handlers.start("external", handler_settings(world.engine, database_url))
        try:
            yield SdkWorld(world, receiver, database_url, kafka_bootstrap)
        finally:
            await handlers.stop()
