"""Gateway settings, read once from the environment; each variable's default lives in schemas/settings.py."""

from __future__ import annotations

from dataclasses import dataclass, field

from core.signing import refuse_development_keys
from schemas import topics
from schemas.settings import DEV_CALLBACK_KEY, DEV_SECRETS_KEY, env, env_float, env_int


@dataclass(frozen=True)
class GatewaySettings(topics.PrefixedTopics):
    host: str = field(default_factory=lambda: env("FLOWLINE_GATEWAY_HOST"))
    port: int = field(default_factory=lambda: env_int("FLOWLINE_GATEWAY_PORT"))
    bootstrap_servers: str = field(default_factory=lambda: env("FLOWLINE_KAFKA_BOOTSTRAP"))
    database_url: str = field(default_factory=lambda: env("DATABASE_URL"))
    topic_prefix: str = field(default_factory=lambda: env("FLOWLINE_TOPIC_PREFIX"))
    public_url: str = field(default_factory=lambda: env("FLOWLINE_PUBLIC_URL"))
    callback_key: bytes = field(default_factory=lambda: env("FLOWLINE_CALLBACK_KEY").encode())
    max_body_bytes: int = field(default_factory=lambda: env_int("FLOWLINE_MAX_BODY_BYTES"))
    wait_seconds: float = field(default_factory=lambda: env_float("FLOWLINE_WAIT_SECONDS"))
    replay_window_seconds: int = field(default_factory=lambda: env_int("FLOWLINE_REPLAY_WINDOW_SECONDS"))
    projector_group: str = field(default_factory=lambda: env("FLOWLINE_PROJECTOR_GROUP"))
    db_pool_size: int = field(default_factory=lambda: env_int("FLOWLINE_GATEWAY_DB_POOL"))
    # How long a command waits for the projector to show the instance it names before answering 404: a
    # client that follows `workflow.events` acts on an instance before the read model has it (issue 9.7).
    # Slow clients (slowloris): complete request headers must arrive within header_timeout_seconds of the
    # connection opening (or of the previous response), a declared body within body_timeout_seconds.
    header_timeout_seconds: float = field(default_factory=lambda: env_float("FLOWLINE_HEADER_TIMEOUT_SECONDS"))
    body_timeout_seconds: float = field(default_factory=lambda: env_float("FLOWLINE_BODY_TIMEOUT_SECONDS"))
    instance_wait_seconds: float = field(default_factory=lambda: env_float("FLOWLINE_INSTANCE_WAIT_SECONDS"))

    def __post_init__(self) -> None:
        secrets_key = env("FLOWLINE_SECRETS_KEY")
        refuse_development_keys(env("FLOWLINE_PROFILE"),
                                {"FLOWLINE_CALLBACK_KEY": self.callback_key == DEV_CALLBACK_KEY.encode(),
                                 "FLOWLINE_SECRETS_KEY": secrets_key == DEV_SECRETS_KEY})

    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")
