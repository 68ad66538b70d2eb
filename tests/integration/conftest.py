"""Integration tests run against the real test-profile stack (see tests/conftest.py)."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session", autouse=True)
def _integration_stack(request: pytest.FixtureRequest) -> None:
    """Start (or connect to) the stack once, before the first integration test."""
    request.getfixturevalue("stack")
