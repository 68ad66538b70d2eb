"""End-to-end tests drive a whole Flowline (engine, projector, gateway) on the real test-profile stack
through its API and topics (see tests/conftest.py for the stack, tests/integration/gateway/world.py for
the processes)."""

from __future__ import annotations

import pytest

from tests.integration.gateway.world import running_world


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session", autouse=True)
def _e2e_stack(request: pytest.FixtureRequest) -> None:
    """Start (or connect to) the stack once, before the first e2e test."""
    request.getfixturevalue("stack")


@pytest.fixture(scope="module")
async def e2e_world(kafka_bootstrap, database_url):
    async with running_world(kafka_bootstrap, database_url) as world:
        yield world
