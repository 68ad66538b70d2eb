"""Development seed: principals and API tokens of two demo tenants, the five built-in templates for tenant
"acme" (in PostgreSQL and on `workflow.templates`), and a demo agent permission. Idempotent: run it again
and nothing is duplicated (templates are re-published at their current version, which the compacted topic
absorbs; a template already seeded keeps the status it has now, unless the built-ins are asked for
ACTIVE; it writes with `schemas.templates.write_template`, as the gateway does). `deploy/stack up` runs it
after the processes start; `flowline seed` runs it alone.

The built-ins are seeded INACTIVE (status PAUSED) unless FLOWLINE_SEED_BUILTINS=active: a newcomer who
follows the epic and creates its procurement template must get one instance per transfer, not a second
one from the seeded built-in with the same trigger and a third from the seeded trade template's threshold
(issue 9.8). Activate one by PUTting its document back (`PUT /v1/workflows/templates/wf_<name>`).

The dev tokens are fixed strings so the docs and scripts can use them; they exist only in a database the
seed wrote. Never run this against a production database.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import asyncpg
from aiokafka import AIOKafkaProducer

from core.builtin import BUILTIN_NAMES, builtin_template
from core.validation import validate_template
from gateway.auth import hash_token
from schemas import settings, topics
from schemas.codec import Codec
from schemas.records import TemplateRecord
from schemas.settings import env
from schemas.templates import template_key, write_template

TENANT = "acme"


@dataclass(frozen=True)
class DevPrincipal:
    id: str
    tenant_id: str
    kind: str
    roles: tuple[str, ...]
    display_name: str
    email: str = ""

    @property
    def token(self) -> str:
        return f"fl_dev_{self.id.replace('-', '_')}"


PRINCIPALS = (
    DevPrincipal("acme-admin", TENANT, "human", ("admin",), "Acme partner admin", "admin@acme.test"),
    DevPrincipal("acme-operator", TENANT, "human", ("operator",), "Olga Operator", "ops@acme.test"),
    DevPrincipal("alice-cfo", TENANT, "human", ("cfo",), "Alice (CFO)", "alice@acme.test"),
    DevPrincipal("bob-manager", TENANT, "human", ("finance_manager",), "Bob (finance manager)", "bob@acme.test"),
    DevPrincipal("rita-requester", TENANT, "human", ("requester",), "Rita Requester", "rita@acme.test"),
    DevPrincipal("vera-viewer", TENANT, "human", ("viewer",), "Vera Viewer", "vera@acme.test"),
    DevPrincipal("erp-integration", TENANT, "human", ("integration",), "ERP callback client"),
    DevPrincipal("agent_456", TENANT, "agent", (), "Procurement agent"),
    DevPrincipal("globex-admin", "globex", "human", ("admin",), "Globex partner admin", "admin@globex.test"),
)


def template_id(name: str) -> str:
    return f"wf_{name}"


def builtin_status(env: dict[str, str] | None = None) -> str:
    """PAUSED unless FLOWLINE_SEED_BUILTINS=active (see the module docstring for why)."""
    wanted = settings.env("FLOWLINE_SEED_BUILTINS", env).strip().lower()
    if wanted not in ("active", "inactive"):
        raise ValueError(f"FLOWLINE_SEED_BUILTINS must be active or inactive, not {wanted!r}")
    return "ACTIVE" if wanted == "active" else "PAUSED"


async def seed(database_url: str, bootstrap: str, topic_prefix: str = "", status: str | None = None) -> dict[str, str]:
    status = status or builtin_status()
    conn = await asyncpg.connect(database_url)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    codec = Codec.from_env()
    try:
        async with conn.transaction():
            for p in PRINCIPALS:
                await conn.execute(
                    """INSERT INTO principals (id, tenant_id, kind, display_name, email, roles)
                       VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING""",
                    p.id, p.tenant_id, p.kind, p.display_name, p.email or None, list(p.roles))
                await conn.execute(
                    """INSERT INTO api_tokens (token_hash, principal_id, name) VALUES ($1, $2, 'dev seed')
                       ON CONFLICT (token_hash) DO NOTHING""", hash_token(p.token), p.id)

            async def publish(record: TemplateRecord) -> None:
                await producer.send_and_wait(topic_prefix + topics.WORKFLOW_TEMPLATES, codec.encode(record),
                                             key=template_key(record))

            for name in BUILTIN_NAMES:
                document = builtin_template(name)
                problems = validate_template(document)
                if problems:
                    raise ValueError(f"built-in template {name} is invalid: {problems}")
                await write_template(conn, publish, template_id=template_id(name), tenant_id=TENANT,
                                     document=document, status=status, created_by="seed", if_absent=True)
            procurement = template_id("procurement_approval")
            await conn.execute(
                """INSERT INTO agent_workflow_permissions (agent_id, tenant_id, template_id, can_initiate,
                       can_approve, approval_conditions) VALUES ('agent_456', $1, $2, true, true, $3::jsonb)
                   ON CONFLICT DO NOTHING""",
                TENANT, procurement, json.dumps({"max_amount": 1000, "step_names": ["Manager Approval"]}))
    finally:
        await producer.stop()
        await conn.close()
    return {p.id: p.token for p in PRINCIPALS}


def print_builtins(status: str | None = None) -> None:
    status = status or builtin_status()
    names = ", ".join(template_id(n) for n in BUILTIN_NAMES)
    if status == "ACTIVE":
        print(f"built-in templates of tenant {TENANT!r} seeded ACTIVE (FLOWLINE_SEED_BUILTINS=active): {names}")
        return
    print(f"built-in templates of tenant {TENANT!r} seeded INACTIVE (status PAUSED), so only templates you create "
          f"match events: {names}")
    print("  activate one: PUT its document back to /v1/workflows/templates/<id> (docs/api.md), or all: "
          "FLOWLINE_SEED_BUILTINS=active deploy/stack up")


def print_tokens(tokens: dict[str, str]) -> None:
    print("dev API tokens (Authorization: Bearer <token>):")
    by_id = {p.id: p for p in PRINCIPALS}
    for principal_id, token in tokens.items():
        p = by_id[principal_id]
        roles = ",".join(p.roles) or p.kind
        print(f"  {principal_id:<16} {p.tenant_id:<7} {roles:<16} {token}")


def main() -> int:
    tokens = asyncio.run(seed(
        env("DATABASE_URL"),
        env("FLOWLINE_KAFKA_BOOTSTRAP"),
        env("FLOWLINE_TOPIC_PREFIX")))
    print_builtins()
    print_tokens(tokens)
    return 0
