"""Gateway settings, read once from the environment (every variable is listed in docs/api.md)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from core.signing import refuse_development_keys
from deploy import topics
from store.secrets import DEV_KEY as DEV_SECRETS_KEY

DEV_CALLBACK_KEY = "flowline-development-callback-key"  # dev stack only; set FLOWLINE_CALLBACK_KEY elsewhere


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


@dataclass(frozen=True)
class GatewaySettings:
    host: str = field(default_factory=lambda: _env("FLOWLINE_GATEWAY_HOST", "127.0.0.1"))
    port: int = field(default_factory=lambda: int(_env("FLOWLINE_GATEWAY_PORT", "8700")))
    bootstrap_servers: str = field(default_factory=lambda: _env("FLOWLINE_KAFKA_BOOTSTRAP", "127.0.0.1:19092"))
    database_url: str = field(default_factory=lambda: _env("DATABASE_URL",
                                                           "postgresql://postgres@127.0.0.1:15432/flowline"))
    topic_prefix: str = field(default_factory=lambda: _env("FLOWLINE_TOPIC_PREFIX", ""))
    public_url: str = field(default_factory=lambda: _env("FLOWLINE_PUBLIC_URL", ""))
    callback_key: bytes = field(default_factory=lambda: _env("FLOWLINE_CALLBACK_KEY", DEV_CALLBACK_KEY).encode())
    max_body_bytes: int = field(default_factory=lambda: int(_env("FLOWLINE_MAX_BODY_BYTES", str(256 * 1024))))
    wait_seconds: float = field(default_factory=lambda: float(_env("FLOWLINE_WAIT_SECONDS", "10")))
    replay_window_seconds: int = field(default_factory=lambda: int(_env("FLOWLINE_REPLAY_WINDOW_SECONDS", "300")))
    projector_group: str = field(default_factory=lambda: _env("FLOWLINE_PROJECTOR_GROUP", "flowline-projector"))
    db_pool_size: int = field(default_factory=lambda: int(_env("FLOWLINE_GATEWAY_DB_POOL", "8")))
    # How long a command waits for the projector to show the instance it names before answering 404: a
    # client that follows `workflow.events` acts on an instance before the read model has it (issue 9.7).
    # Slow clients (slowloris): complete request headers must arrive within header_timeout_seconds of the
    # connection opening (or of the previous response), a declared body within body_timeout_seconds.
    header_timeout_seconds: float = field(default_factory=lambda: float(_env("FLOWLINE_HEADER_TIMEOUT_SECONDS", "15")))
    body_timeout_seconds: float = field(default_factory=lambda: float(_env("FLOWLINE_BODY_TIMEOUT_SECONDS", "30")))
    instance_wait_seconds: float = field(default_factory=lambda: float(_env("FLOWLINE_INSTANCE_WAIT_SECONDS", "5")))

    def __post_init__(self) -> None:
        secrets_key = _env("FLOWLINE_SECRETS_KEY", DEV_SECRETS_KEY)
        refuse_development_keys(_env("FLOWLINE_PROFILE", "dev"),
                                {"FLOWLINE_CALLBACK_KEY": self.callback_key == DEV_CALLBACK_KEY.encode(),
                                 "FLOWLINE_SECRETS_KEY": secrets_key == DEV_SECRETS_KEY})

    def topic(self, name: str) -> str:
        return self.topic_prefix + name

    @property
    def commands_topic(self) -> str:
        return self.topic(topics.WORKFLOW_COMMANDS)

    @property
    def templates_topic(self) -> str:
        return self.topic(topics.WORKFLOW_TEMPLATES)

    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")
