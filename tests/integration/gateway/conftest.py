"""Gateway tests: one engine + projector + gateway for the session (see world.py); tests isolate by tenant."""

from __future__ import annotations

import pytest

from tests.integration.engine_harness import EngineWorld
from tests.integration.gateway.world import ApiWorld


@pytest.fixture(scope="session")
async def api_world(kafka_bootstrap, database_url):
    async with EngineWorld(kafka_bootstrap) as engine:
        world = await ApiWorld(engine=engine, database_url=database_url).start()
        try:
            yield world
        finally:
            await world.stop()


@pytest.fixture
async def tenant(api_world):
    return await api_world.new_tenant()
