"""Where a stack lives: its profile (ports, URLs, state directory, external services).

Why a module of its own: every other part of `deploy/stackctl` (Kafka, PostgreSQL, the processes, the
summary) reads the profile and nothing else of each other's; the profile reads only the environment.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from schemas.settings import env as setting
from schemas.settings import env_int, given

REPO_ROOT = Path(__file__).resolve().parents[2]
KAFKA_VERSION = "4.1.1"
DATABASE_NAME = "flowline"

_PROFILE_DEFAULTS: dict[str, dict[str, int]] = {
    # partitions: the dev stack is one broker and one engine on one machine, where every partition is one more
    # lane of transactions in that engine. One lane commits the most records per transaction, and every
    # consumer downstream then fetches them in one go: at 16 workflows in flight a workflow cost 2.8 ms of CPU
    # with 1 partition against 6.9 with 2 and 8.3 with 3, and took 31 ms against 61 and 73 (docs/performance.md,
    # "One partition on the local stack", measured). The test stack keeps 6 so that the suite exercises
    # partitions spread over workers.
    "dev": {"kafka": 19092, "controller": 19093, "postgres": 15432, "gateway": 8700, "partitions": 1},
    "test": {"kafka": 29092, "controller": 29093, "postgres": 25432, "gateway": 28700, "partitions": 6},
}


def _profile_int(env: Mapping[str, str] | None, name: str, default: int) -> int:
    """A registered variable whose default is the profile's (schemas/settings.py)."""
    raw = given(name, env)
    return int(raw) if raw else default


@dataclass(frozen=True)
class Profile:
    """Where a stack lives: ports, state directory and whether Kafka/PostgreSQL are external."""

    name: str
    state_dir: Path
    cache_dir: Path
    kafka_port: int
    controller_port: int
    postgres_port: int
    gateway_port: int
    partitions: int
    replication_factor: int
    kafka_heap: str
    kafka_jvm_opts: str | None = None
    external_kafka_bootstrap: str | None = None
    external_database_url: str | None = None
    # FLOWLINE_PARTITIONS was set: an existing stack's topics with another count are a configuration error
    # to warn about, not a count to keep (lifecycle.up)
    partitions_given: bool = False

    @classmethod
    def load(cls, name: str | None = None, env: dict[str, str] | None = None) -> Profile:
        name = name or setting("FLOWLINE_PROFILE", env)
        if name not in _PROFILE_DEFAULTS:
            raise ValueError(f"unknown profile {name!r}; expected one of {sorted(_PROFILE_DEFAULTS)}")
        d = _PROFILE_DEFAULTS[name]
        state_dir = Path(given("FLOWLINE_STATE_DIR", env) or REPO_ROOT / ".flowline" / name).resolve()
        cache_dir = Path(given("FLOWLINE_CACHE", env) or Path.home() / ".cache" / "flowline").expanduser()
        return cls(
            name=name,
            state_dir=state_dir,
            cache_dir=cache_dir.resolve(),
            kafka_port=_profile_int(env, "FLOWLINE_KAFKA_PORT", d["kafka"]),
            controller_port=_profile_int(env, "FLOWLINE_KAFKA_CONTROLLER_PORT", d["controller"]),
            postgres_port=_profile_int(env, "FLOWLINE_PG_PORT", d["postgres"]),
            gateway_port=_profile_int(env, "FLOWLINE_GATEWAY_PORT", d["gateway"]),
            partitions=_profile_int(env, "FLOWLINE_PARTITIONS", d["partitions"]),
            replication_factor=env_int("FLOWLINE_REPLICATION_FACTOR", env),
            kafka_heap=setting("FLOWLINE_KAFKA_HEAP_OPTS", env),
            kafka_jvm_opts=given("FLOWLINE_KAFKA_JVM_OPTS", env),
            external_kafka_bootstrap=given("FLOWLINE_KAFKA_BOOTSTRAP", env),
            external_database_url=given("DATABASE_URL", env),
            partitions_given=bool(given("FLOWLINE_PARTITIONS", env)),
        )

    # ---- derived locations -------------------------------------------------------------------------
    @property
    def external_kafka(self) -> bool:
        return self.external_kafka_bootstrap is not None

    @property
    def external_postgres(self) -> bool:
        return self.external_database_url is not None

    @property
    def kafka_bootstrap(self) -> str:
        return self.external_kafka_bootstrap or f"127.0.0.1:{self.kafka_port}"

    @property
    def database_url(self) -> str:
        return self.external_database_url or (
            f"postgresql://postgres@127.0.0.1:{self.postgres_port}/{DATABASE_NAME}"
        )

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}/"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def run_dir(self) -> Path:
        return self.state_dir / "run"

    @property
    def kafka_dir(self) -> Path:
        return self.state_dir / "kafka"

    @property
    def kafka_data_dir(self) -> Path:
        return self.kafka_dir / "data"

    @property
    def pg_data_dir(self) -> Path:
        return self.state_dir / "postgres" / "data"

    @property
    def kafka_libs_dir(self) -> Path:
        return self.cache_dir / f"kafka-{KAFKA_VERSION}" / "libs"

    def log_file(self, name: str) -> Path:
        return self.logs_dir / f"{name}.log"

    def pid_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    @property
    def mailcatcher_port(self) -> int:
        return self.gateway_port + 3

    def process_env(self) -> dict[str, str]:
        """Environment every Flowline process (and pytest) gets to find the stack.

        The handlers send email to the stack's mail catcher (deploy/mailcatcher.py) unless FLOWLINE_SMTP_HOST
        or FLOWLINE_SMTP_PORT is set in the environment: no failed delivery to port 25 on every approval."""
        smtp = {} if given("FLOWLINE_SMTP_HOST") or given("FLOWLINE_SMTP_PORT") else {
            "FLOWLINE_SMTP_HOST": "127.0.0.1", "FLOWLINE_SMTP_PORT": str(self.mailcatcher_port)}
        return {
            **smtp,
            "FLOWLINE_MAILCATCHER_PORT": str(self.mailcatcher_port),
            "FLOWLINE_PROFILE": self.name,
            "FLOWLINE_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            "DATABASE_URL": self.database_url,
            "FLOWLINE_PARTITIONS": str(self.partitions),
            "FLOWLINE_REPLICATION_FACTOR": str(self.replication_factor),
            "FLOWLINE_GATEWAY_PORT": str(self.gateway_port),
            "FLOWLINE_ENGINE_HTTP_PORT": str(self.gateway_port + 1),
            "FLOWLINE_STATE_DIR": str(self.state_dir),
            "FLOWLINE_ENGINE_STATE_DIR": str(self.state_dir / "engine-state"),
        }


def rel(path: str | Path) -> str:
    p = Path(path)
    with contextlib.suppress(ValueError):
        return str(p.relative_to(REPO_ROOT))
    return str(p)
