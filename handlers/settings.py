"""Handler settings, read once from the environment (the composition root passes them down).

Every variable is optional on the dev stack; production sets the keys. Topic names take the same
`FLOWLINE_TOPIC_PREFIX` as the engine (streams/settings.py), so an isolated engine and its handlers share
one cluster without seeing anyone else's records; the consumer group carries the prefix too.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.signing import refuse_development_keys
from deploy import topics
from handlers.http import AllowedDestination

DEV_WEBHOOK_SIGNING_KEY = "flowline-development-webhook-signing-key"  # dev stack only; README says so
DEV_CALLBACK_KEY = "flowline-development-callback-key"  # dev stack only


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
class HandlerSettings:
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
        e = os.environ if env is None else env
        refuse_development_keys(e.get("FLOWLINE_PROFILE", "dev"), {
            "FLOWLINE_CALLBACK_KEY": e.get("FLOWLINE_CALLBACK_KEY", DEV_CALLBACK_KEY) == DEV_CALLBACK_KEY,
            "FLOWLINE_WEBHOOK_SIGNING_KEY":
                e.get("FLOWLINE_WEBHOOK_SIGNING_KEY", DEV_WEBHOOK_SIGNING_KEY) == DEV_WEBHOOK_SIGNING_KEY})
        public_url = e.get("FLOWLINE_PUBLIC_URL") or f"http://127.0.0.1:{e.get('FLOWLINE_GATEWAY_PORT', '8700')}"
        return cls(
            bootstrap_servers=e.get("FLOWLINE_KAFKA_BOOTSTRAP", "127.0.0.1:19092"),
            topic_prefix=e.get("FLOWLINE_TOPIC_PREFIX", ""),
            concurrency=int(e.get(f"FLOWLINE_HANDLER_{kind.upper()}_CONCURRENCY",
                                  e.get("FLOWLINE_HANDLER_CONCURRENCY", "32"))),
            metrics_port=int(e.get(f"FLOWLINE_HANDLER_{kind.upper()}_METRICS_PORT", "0")),
            session_timeout_ms=int(e.get("FLOWLINE_HANDLER_SESSION_TIMEOUT_MS", "10000")),
            database_url=e.get("DATABASE_URL", ""),
            public_url=public_url.rstrip("/"),
            callback_key=e.get("FLOWLINE_CALLBACK_KEY", DEV_CALLBACK_KEY).encode(),
            webhook_signing_key=e.get("FLOWLINE_WEBHOOK_SIGNING_KEY", DEV_WEBHOOK_SIGNING_KEY).encode(),
            smtp_host=e.get("FLOWLINE_SMTP_HOST", "127.0.0.1"),
            smtp_port=int(e.get("FLOWLINE_SMTP_PORT", "25")),
            smtp_user=e.get("FLOWLINE_SMTP_USER", ""),
            smtp_password=e.get("FLOWLINE_SMTP_PASSWORD", ""),
            smtp_from=e.get("FLOWLINE_SMTP_FROM", "flowline@localhost"),
            smtp_starttls=e.get("FLOWLINE_SMTP_STARTTLS", "").lower() in ("1", "true", "yes"),
            allow_private_networks=_networks(e.get("FLOWLINE_ALLOW_PRIVATE_NETWORKS", "")),
            tenants=_tenants(e.get("FLOWLINE_TENANTS", "")),
            payment_timeout_seconds=float(e.get("FLOWLINE_PAYMENT_TIMEOUT_SECONDS", "30")),
            secrets_ttl_seconds=float(e.get("FLOWLINE_SECRETS_CACHE_SECONDS", "30")),
        )

    def topic(self, name: str) -> str:
        return self.topic_prefix + name

    def request_topic(self, kind: str) -> str:
        return self.topic_prefix + topics.step_topic(kind)

    def group_id(self, kind: str) -> str:
        return f"{self.topic_prefix}flowline-handler-{kind}"

    @property
    def results_topic(self) -> str:
        return self.topic(topics.WORKFLOW_STEP_RESULTS)

    @property
    def commands_topic(self) -> str:
        return self.topic(topics.WORKFLOW_COMMANDS)

    @property
    def dlq_topic(self) -> str:
        return self.topic(topics.WORKFLOW_DLQ)

    @property
    def payments_commands_topic(self) -> str:
        return self.topic(topics.PAYMENTS_COMMANDS)

    @property
    def payments_results_topic(self) -> str:
        return self.topic(topics.PAYMENTS_RESULTS)

    def payos(self) -> dict[str, Any]:
        """What `{{payos.*}}` placeholders see."""
        return {"base_url": self.public_url, "api_url": f"{self.public_url}/v1",
                "webhook_url": f"{self.public_url}/v1"}
