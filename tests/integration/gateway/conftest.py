"""Gateway tests: one engine + projector + gateway per module (see world.py), stopped when the module is
done so it does not load the machine under later tests; tests isolate themselves by tenant."""

from __future__ import annotations

import pytest

from tests.integration.gateway.world import running_world


@pytest.fixture(scope="module")
async def api_world(kafka_bootstrap, database_url):
    async with running_world(kafka_bootstrap, database_url) as world:
        yield world


@pytest.fixture
async def tenant(api_world):
    return await api_world.new_tenant()
