"""Engine settings, read once from the environment; each variable's default lives in schemas/settings.py."""

from __future__ import annotations

import os
import socket
import tempfile
from dataclasses import dataclass, field

from schemas import topics
from schemas.settings import env, env_flag, env_float, env_int


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
class EngineSettings(topics.PrefixedTopics):
    bootstrap_servers: str = field(default_factory=lambda: env("FLOWLINE_KAFKA_BOOTSTRAP"))
    app_id: str = field(default_factory=lambda: env("FLOWLINE_ENGINE_ID"))
    member_name: str = field(default_factory=lambda: env("FLOWLINE_MEMBER") or f"{socket.gethostname()}-{os.getpid()}")
    partitions: int = field(default_factory=topics.partitions_from_env)
    trigger_topics: tuple[str, ...] = field(default_factory=lambda: tuple(
        t.strip() for t in env("FLOWLINE_TRIGGER_TOPICS").split(",") if t.strip()))
    # Trigger topics bound to one tenant: "topic=tenant,topic=tenant". An event on a bound topic belongs to
    # that tenant (naming another is refused); on any other topic it must name its tenant_id.
    trigger_topic_tenants: dict[str, str] = field(default_factory=lambda: _bindings(
        env("FLOWLINE_TRIGGER_TOPIC_TENANTS")))
    max_batch: int = field(default_factory=lambda: env_int("FLOWLINE_ENGINE_MAX_BATCH"))
    poll_timeout_ms: int = field(default_factory=lambda: env_int("FLOWLINE_ENGINE_POLL_MS"))
    # How long the broker may hold a fetch that finds nothing new. With fetch_min_bytes=1 the broker answers
    # as soon as a record arrives, so a long wait costs no latency; a short one (it was 10 ms) makes every
    # consumer ask a hundred times a second and keeps the broker busy on an idle stack (docs/performance.md).
    fetch_wait_ms: int = field(default_factory=lambda: env_int("FLOWLINE_ENGINE_FETCH_WAIT_MS"))
    timer_sweep_ms: int = field(default_factory=lambda: env_int("FLOWLINE_TIMER_SWEEP_MS"))
    linger_ms: int = field(default_factory=lambda: env_int("FLOWLINE_PRODUCER_LINGER_MS"))
    # HTTP port for /health and /metrics (0: none); FLOWLINE_ENGINE_METRICS_PORT is the older name
    metrics_port: int = field(default_factory=lambda: env_int("FLOWLINE_ENGINE_HTTP_PORT"))
    session_timeout_ms: int = field(default_factory=lambda: env_int("FLOWLINE_ENGINE_SESSION_TIMEOUT_MS"))
    # Finished instances are forgotten by the engine this long after they ended (0: never). Keep it longer
    # than the retention of the trigger topics, or a redelivered old event could start an instance again.
    retention_hours: float = field(default_factory=lambda: env_float("FLOWLINE_RETENTION_HOURS"))
    retention_sweep_ms: int = field(default_factory=lambda: env_int("FLOWLINE_RETENTION_SWEEP_MS"))
    # Where each partition's on-disk state store lives (streams/state_store.py): `<dir>/<app id>/slot-<n>/p<N>`.
    state_dir: str = field(default_factory=lambda: env("FLOWLINE_ENGINE_STATE_DIR") or os.path.join(
        tempfile.gettempdir(), "flowline-state"))
    # Decoded states kept in memory per partition (least recently used go first; the disk has them all).
    state_cache: int = field(default_factory=lambda: env_int("FLOWLINE_STATE_CACHE"))
    # A store last known current longer ago than this is rebuilt in full: the changelog's compaction may have
    # dropped a tombstone written since (delete.retention.ms, a day by default), which a delta read would miss.
    state_max_age_hours: float = field(default_factory=lambda: env_float("FLOWLINE_STATE_MAX_AGE_HOURS"))
    # Warm copies of partitions this worker does not own (streams/standby.py): each worker follows the
    # changelog of the next N workers' partitions, so a failover reads only the last moments (0: none).
    standby_replicas: int = field(default_factory=lambda: env_int("FLOWLINE_ENGINE_STANDBY_REPLICAS"))
    # The processor consumes the trigger topics co-partitioned with workflow.commands itself and starts an
    # event's instances in the transaction that consumes it (docs/adr/0014); off: every start goes through
    # the matcher and workflow.commands, as before. Every engine of an installation must agree on it.
    inline_start: bool = field(default_factory=lambda: env_flag("FLOWLINE_ENGINE_INLINE_START"))
    # Prepended to every topic name: lets several isolated engines share one cluster (tests, staging).
    topic_prefix: str = field(default_factory=lambda: env("FLOWLINE_TOPIC_PREFIX"))

    @property
    def trigger_topic_names(self) -> list[str]:
        return [self.topic(t) for t in self.trigger_topics]

    def group(self, role: str) -> str:
        """The consumer group (and transactional id prefix) of an engine role: `matcher` or `processor`."""
        return f"{self.app_id}-{role}"
