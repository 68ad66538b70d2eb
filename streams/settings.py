"""Engine settings, read once from the environment (every variable is listed in the README)."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field

from deploy import topics


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _bindings(raw: str) -> dict[str, str]:
    """`topic=tenant,topic=tenant` -> {topic: tenant} (topic names without FLOWLINE_TOPIC_PREFIX)."""
    found = {}
    for part in raw.split(","):
        if not part.strip():
            continue
        topic, sep, tenant = part.partition("=")
        if not sep or not topic.strip() or not tenant.strip():
            raise ValueError(f"FLOWLINE_TRIGGER_TOPIC_TENANTS: {part!r} is not topic=tenant")
        found[topic.strip()] = tenant.strip()
    return found


@dataclass(frozen=True)
class EngineSettings:
    bootstrap_servers: str = field(default_factory=lambda: _env("FLOWLINE_KAFKA_BOOTSTRAP", "127.0.0.1:19092"))
    app_id: str = field(default_factory=lambda: _env("FLOWLINE_ENGINE_ID", "flowline-engine"))
    member_name: str = field(default_factory=lambda: _env("FLOWLINE_MEMBER", f"{socket.gethostname()}-{os.getpid()}"))
    partitions: int = field(default_factory=topics.partitions_from_env)
    trigger_topics: tuple[str, ...] = field(default_factory=lambda: tuple(
        t.strip() for t in _env("FLOWLINE_TRIGGER_TOPICS", topics.PAYMENTS_TRANSFERS).split(",") if t.strip()))
    # Trigger topics bound to one tenant: "topic=tenant,topic=tenant". An event on a bound topic belongs to
    # that tenant (naming another is refused); on any other topic it must name its tenant_id.
    trigger_topic_tenants: dict[str, str] = field(default_factory=lambda: _bindings(
        _env("FLOWLINE_TRIGGER_TOPIC_TENANTS", "")))
    max_batch: int = field(default_factory=lambda: int(_env("FLOWLINE_ENGINE_MAX_BATCH", "500")))
    poll_timeout_ms: int = field(default_factory=lambda: int(_env("FLOWLINE_ENGINE_POLL_MS", "50")))
    # How long the broker may hold a fetch that finds nothing new. With fetch_min_bytes=1 the broker answers
    # as soon as a record arrives, so a long wait costs no latency; a short one (it was 10 ms) makes every
    # consumer ask a hundred times a second and keeps the broker busy on an idle stack (docs/performance.md).
    fetch_wait_ms: int = field(default_factory=lambda: int(_env("FLOWLINE_ENGINE_FETCH_WAIT_MS", "500")))
    timer_sweep_ms: int = field(default_factory=lambda: int(_env("FLOWLINE_TIMER_SWEEP_MS", "200")))
    linger_ms: int = field(default_factory=lambda: int(_env("FLOWLINE_PRODUCER_LINGER_MS", "1")))
    # HTTP port for /health and /metrics (0: none); FLOWLINE_ENGINE_METRICS_PORT is the older name
    metrics_port: int = field(default_factory=lambda: int(_env("FLOWLINE_ENGINE_HTTP_PORT",
                                                               _env("FLOWLINE_ENGINE_METRICS_PORT", "0"))))
    session_timeout_ms: int = field(default_factory=lambda: int(_env("FLOWLINE_ENGINE_SESSION_TIMEOUT_MS", "10000")))
    # Finished instances are forgotten by the engine this long after they ended (0: never). Keep it longer
    # than the retention of the trigger topics, or a redelivered old event could start an instance again.
    retention_hours: float = field(default_factory=lambda: float(_env("FLOWLINE_RETENTION_HOURS", "168")))
    retention_sweep_ms: int = field(default_factory=lambda: int(_env("FLOWLINE_RETENTION_SWEEP_MS", "60000")))
    # Prepended to every topic name: lets several isolated engines share one cluster (tests, staging).
    topic_prefix: str = field(default_factory=lambda: _env("FLOWLINE_TOPIC_PREFIX", ""))

    def topic(self, name: str) -> str:
        return self.topic_prefix + name

    def step_topic(self, kind: str) -> str:
        return self.topic_prefix + topics.step_topic(kind)

    def unprefixed(self, name: str) -> str:
        return name[len(self.topic_prefix):] if self.topic_prefix and name.startswith(self.topic_prefix) else name

    @property
    def trigger_topic_names(self) -> list[str]:
        return [self.topic(t) for t in self.trigger_topics]

    @property
    def commands_topic(self) -> str:
        return self.topic(topics.WORKFLOW_COMMANDS)

    @property
    def results_topic(self) -> str:
        return self.topic(topics.WORKFLOW_STEP_RESULTS)

    @property
    def events_topic(self) -> str:
        return self.topic(topics.WORKFLOW_EVENTS)

    @property
    def changelog_topic(self) -> str:
        return self.topic(topics.ENGINE_INSTANCES_CHANGELOG)

    @property
    def templates_topic(self) -> str:
        return self.topic(topics.WORKFLOW_TEMPLATES)

    @property
    def dlq_topic(self) -> str:
        return self.topic(topics.WORKFLOW_DLQ)
