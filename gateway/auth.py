"""Bearer tokens -> principals -> permissions.

A token is stored only as its sha256 hex digest (`api_tokens.token_hash`); the principal (`principals`,
migration 0003) carries the tenant, the kind (human or agent) and the roles. Partners are tenants: a
partner's API key is a principal of that tenant with the `admin` role.

Permissions are coarse and per role; who may approve which step is not decided here but by the core
(`core.approvers`) from the Actor the gateway sends, so the gateway only refuses what a role can never
do (a `viewer` approving, an agent editing templates) and leaves the rest to the engine.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

import asyncpg

from core.actors import Actor, ApprovalLimits
from core.types import ActorKind
from gateway.problems import Problem

READ = "read"
TEMPLATES_WRITE = "templates:write"
SECRETS_WRITE = "secrets:write"
AGENTS_WRITE = "agents:write"
TRIGGER = "trigger"
DECIDE = "decide"
OPERATE = "operate"
ADVANCE = "advance"
CALLBACK = "callback"
AUDIT_READ = "audit:read"  # the tenant's security log (gateway/agent_access.py): admins only
ALL = frozenset({READ, TEMPLATES_WRITE, SECRETS_WRITE, AGENTS_WRITE, TRIGGER, DECIDE, OPERATE, ADVANCE, CALLBACK,
                 AUDIT_READ})

ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "admin": ALL,
    "workflow_admin": frozenset({READ, TEMPLATES_WRITE, SECRETS_WRITE}),
    "operator": frozenset({READ, TRIGGER, DECIDE, OPERATE, ADVANCE, CALLBACK}),
    "integration": frozenset({READ, CALLBACK}),
    "requester": frozenset({READ, TRIGGER}),
    "viewer": frozenset({READ}),
}
APPROVER_PERMISSIONS = frozenset({READ, DECIDE})  # any other role names an approver (cfo, finance_manager, ...)
AGENT_PERMISSIONS = frozenset({READ, DECIDE, ADVANCE, TRIGGER})

TOKEN_PREFIX = "fl_"
CACHE_SECONDS = 5.0


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Principal:
    id: str
    tenant_id: str
    kind: str  # "human" | "agent"
    roles: tuple[str, ...] = ()
    display_name: str = ""

    @property
    def is_agent(self) -> bool:
        return self.kind == ActorKind.AGENT.value

    @property
    def permissions(self) -> frozenset[str]:
        if self.is_agent:
            return AGENT_PERMISSIONS
        granted: set[str] = set()
        for role in self.roles:
            granted |= ROLE_PERMISSIONS.get(role, APPROVER_PERMISSIONS)
        return frozenset(granted or {READ})

    def can(self, permission: str) -> bool:
        return permission in self.permissions

    def require(self, permission: str, what: str) -> None:
        if not self.can(permission):
            roles = ", ".join(self.roles) or "no roles"
            raise Problem(403, f"{self.kind} {self.id} ({roles}) may not {what}")

    def actor(self, limits: ApprovalLimits | None = None) -> Actor:
        return Actor(id=self.id, kind=ActorKind(self.kind), roles=self.roles, tenant_id=self.tenant_id,
                     display_name=self.display_name, approval_limits=limits)


class Authenticator:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._cache: dict[str, tuple[float, Principal | None]] = {}

    async def principal(self, authorization: str | None) -> Principal:
        if not authorization:
            raise Problem(401, "missing Authorization header; send 'Authorization: Bearer <token>'")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Problem(401, "the Authorization header must be 'Bearer <token>'")
        digest = hash_token(token)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            found = cached[1]
        else:
            row = await self.pool.fetchrow(
                """SELECT p.id, p.tenant_id, p.kind, p.display_name, p.roles
                   FROM api_tokens t JOIN principals p ON p.id = t.principal_id
                   WHERE t.token_hash = $1 AND t.revoked_at IS NULL""", digest)
            found = None if row is None else Principal(
                id=row["id"], tenant_id=row["tenant_id"], kind=row["kind"], roles=tuple(row["roles"] or ()),
                display_name=row["display_name"] or "")
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (now + CACHE_SECONDS, found)
        if found is None:
            raise Problem(401, "the bearer token is unknown or revoked")
        return found
