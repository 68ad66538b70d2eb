"""Handler settings, read once from the environment (the composition root passes them down).

Every variable is optional on the dev stack; production sets the keys. Each variable's default lives in
schemas/settings.py (the dataclass defaults below are for tests that build settings by hand). Topic names take the same
`FLOWLINE_TOPIC_PREFIX` as the engine (streams/settings.py), so an isolated engine and its handlers share
one cluster without seeing anyone else's records; the consumer group carries the prefix too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.signing import refuse_development_keys
from handlers.http import AllowedDestination
from schemas import topics
from schemas.settings import DEV_CALLBACK_KEY, DEV_WEBHOOK_SIGNING_KEY, given
from schemas.settings import env as setting


def _tenants(raw: str) -> dict[str, Any]:
    """`FLOWLINE_TENANTS`: inline JSON or a path to a JSON file, `{tenant_id: {webhook_url: ..., ...}}`."""
    if not raw:
        return {}
    text = raw if raw.lstrip().startswith("{") else Path(raw).read_text()
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("FLOWLINE_TENANTS must be a JSON object keyed by tenant id")
    return data


def _networks(raw: str) -> tuple[AllowedDestination, ...]:
    return tuple(AllowedDestination.parse(part) for part in raw.split(",") if part.strip())


@dataclass(frozen=True)
class HandlerSettings(topics.PrefixedTopics):
    bootstrap_servers: str = "127.0.0.1:19092"
    topic_prefix: str = ""
    concurrency: int = 32
    metrics_port: int = 0
    session_timeout_ms: int = 10_000
    commit_interval_ms: int = 200
    database_url: str = ""
    public_url: str = "http://127.0.0.1:8700"
    callback_key: bytes = DEV_CALLBACK_KEY.encode()
    webhook_signing_key: bytes = DEV_WEBHOOK_SIGNING_KEY.encode()
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_user: str = ""
    smtp_password: str = ""
    smtp_from: str = "flowline@localhost"
    smtp_starttls: bool = False
    smtp_timeout_seconds: float = 30.0
    allow_private_networks: tuple[Any, ...] = ()
    tenants: Mapping[str, Any] = field(default_factory=dict)
    payment_timeout_seconds: float = 30.0
    secrets_ttl_seconds: float = 30.0

    @classmethod
    def from_env(cls, kind: str, env: Mapping[str, str] | None = None) -> HandlerSettings:
        e = env

        def get(name: str) -> str:
            return setting(name, e)

        refuse_development_keys(get("FLOWLINE_PROFILE"), {
            "FLOWLINE_CALLBACK_KEY": get("FLOWLINE_CALLBACK_KEY") == DEV_CALLBACK_KEY,
            "FLOWLINE_WEBHOOK_SIGNING_KEY": get("FLOWLINE_WEBHOOK_SIGNING_KEY") == DEV_WEBHOOK_SIGNING_KEY})
        public_url = get("FLOWLINE_PUBLIC_URL") or f"http://127.0.0.1:{get('FLOWLINE_GATEWAY_PORT')}"
        return cls(
            bootstrap_servers=get("FLOWLINE_KAFKA_BOOTSTRAP"),
            topic_prefix=get("FLOWLINE_TOPIC_PREFIX"),
            concurrency=int(given("FLOWLINE_HANDLER_<KIND>_CONCURRENCY", e, kind=kind)
                            or get("FLOWLINE_HANDLER_CONCURRENCY")),
            metrics_port=int(setting("FLOWLINE_HANDLER_<KIND>_METRICS_PORT", e, kind=kind)),
            session_timeout_ms=int(get("FLOWLINE_HANDLER_SESSION_TIMEOUT_MS")),
            # Unset: no database (template secrets off), unlike the gateway and projector, which need one.
            database_url=given("DATABASE_URL", e) or "",
            public_url=public_url.rstrip("/"),
            callback_key=get("FLOWLINE_CALLBACK_KEY").encode(),
            webhook_signing_key=get("FLOWLINE_WEBHOOK_SIGNING_KEY").encode(),
            smtp_host=get("FLOWLINE_SMTP_HOST"),
            smtp_port=int(get("FLOWLINE_SMTP_PORT")),
            smtp_user=get("FLOWLINE_SMTP_USER"),
            smtp_password=get("FLOWLINE_SMTP_PASSWORD"),
            smtp_from=get("FLOWLINE_SMTP_FROM"),
            smtp_starttls=get("FLOWLINE_SMTP_STARTTLS").lower() in ("1", "true", "yes"),
            allow_private_networks=_networks(get("FLOWLINE_ALLOW_PRIVATE_NETWORKS")),
            tenants=_tenants(get("FLOWLINE_TENANTS")),
            payment_timeout_seconds=float(get("FLOWLINE_PAYMENT_TIMEOUT_SECONDS")),
            secrets_ttl_seconds=float(get("FLOWLINE_SECRETS_CACHE_SECONDS")),
        )

    def request_topic(self, kind: str) -> str:
        return self.step_topic(kind)

    def group_id(self, kind: str) -> str:
        return f"{self.topic_prefix}flowline-handler-{kind}"

    def payos(self) -> dict[str, Any]:
        """What `{{payos.*}}` placeholders see."""
        return {"base_url": self.public_url, "api_url": f"{self.public_url}/v1",
                "webhook_url": f"{self.public_url}/v1"}
