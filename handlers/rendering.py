"""The placeholders the engine leaves for handlers: `{{secrets.*}}`, `{{tenant.*}}`, `{{payos.*}}`, and
`{{callback.url}}` / `{{callback.token}}` of an async external step.

Secrets are decrypted from `workflow_template_secrets` (store/secrets.py) only when a value refers to
one, cached in memory for a short time, and never logged: results pass through `redact`, which replaces
any secret value a partner echoes back with `[redacted]`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Protocol

from core.effects import StepRequest
from core.expressions import placeholders_in, render

HANDLER_ROOTS = frozenset({"secrets", "tenant", "payos", "callback"})
REDACTED = "[redacted]"


class MissingSecret(Exception):
    """A value refers to a secret the template does not have (the message names it, never a value)."""


class SecretSource(Protocol):
    async def secrets_for(self, template_id: str) -> Mapping[str, str]: ...


class StaticSecretSource:
    """Fake: secrets given up front, by template id."""

    def __init__(self, secrets: Mapping[str, Mapping[str, str]] | None = None) -> None:
        self.secrets = {k: dict(v) for k, v in (secrets or {}).items()}
        self.loads = 0

    async def secrets_for(self, template_id: str) -> Mapping[str, str]:
        self.loads += 1
        return self.secrets.get(template_id, {})


class PostgresSecretSource:
    """Real: decrypt a template's secrets from PostgreSQL, cached for `ttl` seconds."""

    def __init__(self, pool: Any, box: Any, *, ttl: float = 30.0) -> None:
        self.pool = pool
        self.box = box
        self.ttl = ttl
        self._cache: dict[str, tuple[float, dict[str, str]]] = {}

    async def secrets_for(self, template_id: str) -> Mapping[str, str]:
        from store.secrets import load_secrets

        hit = self._cache.get(template_id)
        now = time.monotonic()
        if hit is not None and hit[0] > now:
            return hit[1]
        values = await load_secrets(self.pool, self.box, template_id)
        self._cache[template_id] = (now + self.ttl, values)
        return values


def secret_names(value: Any) -> set[str]:
    return {path.split(".", 1)[1] for _, path in placeholders_in(value)
            if path.startswith("secrets.") and "." in path}


class Renderer:
    def __init__(self, secrets: SecretSource, tenants: Mapping[str, Any] | None = None,
                 payos: Mapping[str, Any] | None = None) -> None:
        self.secrets = secrets
        self.tenants = dict(tenants or {})
        self.payos = dict(payos or {})

    async def secret(self, request: StepRequest, name: str) -> str:
        values = await self.secrets.secrets_for(request.template_id)
        if name not in values:
            raise MissingSecret(f"secret {name!r} is not configured for template {request.template_id}")
        return values[name]

    async def render(self, request: StepRequest, value: Any,
                     extra: Mapping[str, Any] | None = None) -> tuple[Any, list[str]]:
        """`value` with handler placeholders filled in, and the secret values used (for `redact`)."""
        wanted = secret_names(value)
        secrets: dict[str, str] = {}
        if wanted:
            available = await self.secrets.secrets_for(request.template_id)
            missing = sorted(wanted - set(available))
            if missing:
                raise MissingSecret(f"secret(s) {', '.join(map(repr, missing))} are not configured for template "
                                    f"{request.template_id}")
            secrets = {name: available[name] for name in wanted}
        names = {"secrets": secrets, "tenant": self.tenants.get(request.tenant_id, {}), "payos": self.payos,
                 **(extra or {})}
        return render(value, names, HANDLER_ROOTS, final=True), list(secrets.values())


def redact(value: Any, secrets: list[str]) -> Any:
    """Replace every occurrence of a secret value in a JSON value (strings and keys) with `[redacted]`."""
    if not secrets:
        return value
    if isinstance(value, str):
        for secret in secrets:
            if secret:
                value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, Mapping):
        return {redact(k, secrets): redact(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, secrets) for v in value]
    return value
