"""Every environment variable a Flowline process reads, each with its one default, in one place.

Why: the engine, the handlers, the gateway and the projector each had a settings class with its own copy of
the defaults (the bootstrap address four times, the development callback key twice), and a few modules read
`os.environ` directly; a default changed in one place silently stayed old in another. Now a settings class
asks `env()` for a value and gets the default registered here. The README's configuration table shows the
same defaults; tests/unit/test_settings_registry.py checks that each registered variable's README row says
this default, so the two cannot drift apart.

It lives in `schemas/` because every process may import `schemas/` (adapters never import each other).
The local stack's variables (ports, state dir, JVM heap), the tools' (`flowline`, `flowline mcp`, the SDK)
and the development processes' (mail catcher, payment simulator, seed) are registered here too; those
whose default depends on the stack's profile are read with `given()` and get their default from the
profile. No other module reads `os.environ` (tests/unit/test_settings_registry.py checks the source).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

# Development keys: the dev and test stacks run with them; any other profile refuses to start with them
# (core.signing.refuse_development_keys). The README says so.
DEV_SECRETS_KEY = "Zmxvd2xpbmUtZGV2ZWxvcG1lbnQta2V5LTMyYnl0ZXM="  # base64 of b"flowline-development-key-32bytes"
DEV_CALLBACK_KEY = "flowline-development-callback-key"
DEV_WEBHOOK_SIGNING_KEY = "flowline-development-webhook-signing-key"


@dataclass(frozen=True)
class Variable:
    name: str
    default: str
    # What the README's default column shows when it is not simply the default in backticks.
    shown: str | None = None
    # An older name still accepted when the variable itself is unset.
    older: str | None = None

    @property
    def readme_default(self) -> str:
        if self.shown is not None:
            return self.shown
        return f"`{self.default}`" if self.default else "empty"


VARIABLES: dict[str, Variable] = {v.name: v for v in (
    Variable("FLOWLINE_PROFILE", "dev"),
    Variable("FLOWLINE_KAFKA_BOOTSTRAP", "127.0.0.1:19092", "unset: local broker `127.0.0.1:19092` (`29092`)"),
    Variable("DATABASE_URL", "postgresql://postgres@127.0.0.1:15432/flowline",
             "unset: local `postgresql://postgres@127.0.0.1:15432/flowline` (`25432`)"),
    Variable("FLOWLINE_PARTITIONS", "6", "`6`; the local stack creates `1` (dev) or `6` (test), and an existing "
             "stack keeps its topics' count"),
    Variable("FLOWLINE_TOPIC_PREFIX", ""),
    Variable("FLOWLINE_ENGINE_ID", "flowline-engine"),
    # Empty: `<hostname>-<pid>` (computed by the engine).
    Variable("FLOWLINE_MEMBER", "", "`<hostname>-<pid>`"),
    Variable("FLOWLINE_TRIGGER_TOPICS", "payments.transfers"),
    Variable("FLOWLINE_TRIGGER_TOPIC_TENANTS", ""),
    Variable("FLOWLINE_ENGINE_MAX_BATCH", "500"),
    Variable("FLOWLINE_ENGINE_POLL_MS", "500"),
    Variable("FLOWLINE_ENGINE_FETCH_WAIT_MS", "500"),
    Variable("FLOWLINE_TIMER_SWEEP_MS", "200"),
    Variable("FLOWLINE_PRODUCER_LINGER_MS", "1"),
    Variable("FLOWLINE_ENGINE_HTTP_PORT", "0",
             "gateway port + 1 under `deploy/stack` (8701), else `0` (off)",
             older="FLOWLINE_ENGINE_METRICS_PORT"),
    Variable("FLOWLINE_ENGINE_SESSION_TIMEOUT_MS", "10000"),
    # Empty: `<temp dir>/flowline-state`; `deploy/stack` sets `.flowline/<profile>/engine-state`.
    Variable("FLOWLINE_ENGINE_STATE_DIR", "", "`.flowline/<profile>/engine-state` under `deploy/stack`, else "
             "`<temp dir>/flowline-state`"),
    Variable("FLOWLINE_STATE_CACHE", "2000"),
    Variable("FLOWLINE_STATE_MAX_AGE_HOURS", "12"),
    Variable("FLOWLINE_ENGINE_STANDBY_REPLICAS", "1"),
    Variable("FLOWLINE_ENGINE_INLINE_START", "on"),
    Variable("FLOWLINE_RETENTION_HOURS", "168"),
    Variable("FLOWLINE_RETENTION_SWEEP_MS", "60000"),
    Variable("FLOWLINE_GATEWAY_HOST", "127.0.0.1"),
    Variable("FLOWLINE_GATEWAY_PORT", "8700", "`8700` (`28700`)"),
    # Empty: `http://127.0.0.1:<FLOWLINE_GATEWAY_PORT>`.
    Variable("FLOWLINE_PUBLIC_URL", "", "`http://127.0.0.1:8700`"),
    Variable("FLOWLINE_MAX_BODY_BYTES", str(256 * 1024)),
    Variable("FLOWLINE_WAIT_SECONDS", "10"),
    Variable("FLOWLINE_REPLAY_WINDOW_SECONDS", "300"),
    Variable("FLOWLINE_HEADER_TIMEOUT_SECONDS", "20"),
    Variable("FLOWLINE_BODY_TIMEOUT_SECONDS", "30"),
    Variable("FLOWLINE_INSTANCE_WAIT_SECONDS", "5"),
    Variable("FLOWLINE_GATEWAY_DB_POOL", "8"),
    # Empty: the repository's `dashboard/dist` (gateway/dashboard.py).
    Variable("FLOWLINE_DASHBOARD_DIR", "", "`dashboard/dist`"),
    Variable("FLOWLINE_PROJECTOR_GROUP", "flowline-projector"),
    Variable("FLOWLINE_PROJECTOR_METRICS_PORT", "0", "`0` (off)"),
    Variable("FLOWLINE_SECRETS_KEY", DEV_SECRETS_KEY, "development key"),
    Variable("FLOWLINE_CALLBACK_KEY", DEV_CALLBACK_KEY, "development key"),
    Variable("FLOWLINE_WEBHOOK_SIGNING_KEY", DEV_WEBHOOK_SIGNING_KEY, "development key"),
    Variable("FLOWLINE_SMTP_HOST", "127.0.0.1"),
    Variable("FLOWLINE_SMTP_PORT", "25"),
    Variable("FLOWLINE_SMTP_USER", ""),
    Variable("FLOWLINE_SMTP_PASSWORD", ""),
    Variable("FLOWLINE_SMTP_FROM", "flowline@localhost"),
    Variable("FLOWLINE_SMTP_STARTTLS", "", "off"),
    Variable("FLOWLINE_ALLOW_PRIVATE_NETWORKS", ""),
    Variable("FLOWLINE_TENANTS", ""),
    Variable("FLOWLINE_HANDLER_CONCURRENCY", "32"),
    Variable("FLOWLINE_HANDLER_SESSION_TIMEOUT_MS", "10000"),
    Variable("FLOWLINE_HANDLER_<KIND>_METRICS_PORT", "0", "`0` (off)"),
    Variable("FLOWLINE_PAYMENT_TIMEOUT_SECONDS", "30"),
    Variable("FLOWLINE_SECRETS_CACHE_SECONDS", "30"),
    Variable("FLOWLINE_SCHEMA_REGISTRY_URL", "", "unset"),
    Variable("FLOWLINE_HANDLER_<KIND>_CONCURRENCY", "", "`FLOWLINE_HANDLER_CONCURRENCY`"),
    # the local stack (deploy/stackctl); an empty default means "the profile's" (README: dev (test))
    Variable("FLOWLINE_REPLICATION_FACTOR", "1"),
    Variable("FLOWLINE_KAFKA_PORT", "", "`19092` (`29092`)"),
    Variable("FLOWLINE_KAFKA_CONTROLLER_PORT", "", "`19093` (`29093`)"),
    Variable("FLOWLINE_KAFKA_HEAP_OPTS", "-Xms256m -Xmx768m"),
    Variable("FLOWLINE_KAFKA_JVM_OPTS", "", "the stack's (deploy/stackctl/kafka.py `JVM_OPTS`)"),
    Variable("FLOWLINE_PG_PORT", "", "`15432` (`25432`)"),
    Variable("FLOWLINE_STATE_DIR", "", "`.flowline/<profile>`"),
    Variable("FLOWLINE_CACHE", "", "`~/.cache/flowline`"),
    Variable("FLOWLINE_STACK_STARTED_AT", "", "set by `deploy/stack`"),
    Variable("FLOWLINE_VENV_SECONDS", "", "set by `deploy/stack`"),
    Variable("FLOWLINE_SEED_BUILTINS", "inactive"),
    Variable("FLOWLINE_MAILCATCHER_HOST", "127.0.0.1"),
    Variable("FLOWLINE_MAILCATCHER_PORT", "", "gateway port + 3 (8703)"),
    Variable("FLOWLINE_SIMULATOR_LEDGER", "", "`<state dir>/payment-simulator.jsonl`"),
    Variable("FLOWLINE_SIMULATOR_DELAY_MS", "0"),
    # the tools: SDK, `flowline` user commands, `flowline mcp`
    Variable("FLOWLINE_URL", "", "`http://127.0.0.1:8700`"),
    Variable("FLOWLINE_TOKEN", "", "unset"),
    Variable("FLOWLINE_CONVERSATION_ID", "", "per session"),
    Variable("FLOWLINE_MCP_HOST", "127.0.0.1"),
    Variable("FLOWLINE_MCP_PORT", "", "gateway port + 2 (8702)"),
)}


def env(name: str, environ: Mapping[str, str] | None = None, *, kind: str | None = None) -> str:
    """The value of a registered variable, or its registered default when it is unset or empty.

    `kind` fills `<KIND>` in per-handler names (`FLOWLINE_HANDLER_<KIND>_METRICS_PORT`). An unregistered
    name is a KeyError: a new variable gets its one default here first.
    """
    return given(name, environ, kind=kind) or VARIABLES[name].default


def given(name: str, environ: Mapping[str, str] | None = None, *, kind: str | None = None) -> str | None:
    """The value of a registered variable as set, or None when it is unset or empty: for a variable whose
    default depends on where it is read (the stack's ports per profile, the gateway port + 2 of MCP)."""
    variable = VARIABLES[name]
    key = name.replace("<KIND>", kind.upper()) if kind is not None else name
    found = os.environ if environ is None else environ
    return found.get(key) or (found.get(variable.older) if variable.older else None) or None


def environment() -> dict[str, str]:
    """A copy of the whole environment: what a child process inherits (`deploy/stackctl` starts the
    processes with it plus the stack's own variables). Not for reading a variable: use `env()`."""
    return dict(os.environ)


def env_int(name: str, environ: Mapping[str, str] | None = None, *, kind: str | None = None) -> int:
    return int(env(name, environ, kind=kind))


def env_float(name: str, environ: Mapping[str, str] | None = None) -> float:
    return float(env(name, environ))


def env_flag(name: str, environ: Mapping[str, str] | None = None) -> bool:
    """An on/off variable: `1`/`true`/`yes`/`on` or `0`/`false`/`no`/`off` (any case); anything else is refused
    rather than read as one of them."""
    value = env(name, environ).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} must be on or off (1/0, true/false, yes/no), not {value!r}")
