"""Shared fixtures.

The real stack (Kafka + PostgreSQL, test profile) is started lazily: only tests that use the `stack`
fixture (or `kafka_bootstrap`, `database_url`, `new_topic`) touch it, so `pytest tests/unit` never needs
Java or PostgreSQL. Under `deploy/stack test` the stack is already up (FLOWLINE_STACK_STARTED=1) and the
fixture only connects; run directly, pytest starts the test stack itself and stops it at the end.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class StackInfo:
    kafka_bootstrap: str
    database_url: str
    partitions: int
    profile: object  # deploy.stackctl.Profile


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "broker_kill: SIGKILLs and restarts the session's test broker; runs after "
                                       "every other test (see pytest_collection_modifyitems)")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `broker_kill` SIGKILL the session's shared broker (and restore it): they run after every
    other test, so no other test ever sees the broker away (tests/integration/test_chaos_broker.py)."""
    items.sort(key=lambda item: item.get_closest_marker("broker_kill") is not None)  # stable: keeps the rest


@pytest.fixture(scope="session")
def stack() -> Iterator[StackInfo]:
    from deploy import stackctl as stack_mod

    profile = stack_mod.Profile.load("test")
    started_here = False
    externally_managed = os.environ.get("FLOWLINE_STACK_STARTED") == "1" or (
        profile.external_kafka and profile.external_postgres
    )
    if externally_managed:
        # Make sure the topics and migrations are there (cheap and idempotent).
        stack_mod.ensure_topics(profile)
        stack_mod.migrate(profile.database_url)
    elif not stack_mod.is_up(profile):
        stack_mod.up(profile, processes=False)
        started_here = True
    else:
        stack_mod.ensure_topics(profile)
        stack_mod.migrate(profile.database_url)
    try:
        yield StackInfo(profile.kafka_bootstrap, profile.database_url, profile.partitions, profile)
    finally:
        if started_here:
            stack_mod.down(profile, quiet=True)


@pytest.fixture(scope="session")
def kafka_bootstrap(stack: StackInfo) -> str:
    return stack.kafka_bootstrap


@pytest.fixture(scope="session")
def database_url(stack: StackInfo) -> str:
    return stack.database_url


@pytest.fixture
def new_topic(kafka_bootstrap: str, request: pytest.FixtureRequest) -> Callable[..., Awaitable[str]]:
    """`await new_topic("orders", partitions=3, compacted=False)` creates a uniquely named topic."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    base = request.node.name.split("[")[0][:40]

    async def create(suffix: str = "", partitions: int = 1, compacted: bool = False, **configs: str) -> str:
        name = f"t.{base}.{suffix + '.' if suffix else ''}{uuid.uuid4().hex[:8]}"
        if compacted:
            configs["cleanup.policy"] = "compact"
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            resp = await admin.create_topics([NewTopic(name, partitions, 1, topic_configs=configs)])
            for err in getattr(resp, "topic_errors", []):
                assert err[1] == 0, f"creating {name}: {err}"
        finally:
            await admin.close()
        return name

    return create
