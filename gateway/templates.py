"""Template endpoints: PostgreSQL is the system of record; every version is also published to the
compacted `workflow.templates` topic (key `<template_id>:<version>`) that the engine reads.

A template belongs to one tenant: another tenant's id answers 404. PUT publishes a new version (running
instances keep theirs); DELETE deactivates (status PAUSED: no new instances). Documents are checked by
`core.validation.validate_template`, and every problem comes back with its JSON pointer.
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime
from typing import Any

import asyncpg
from aiohttp import web

from core.overrides import OverrideError, apply_overrides
from core.steps import config_schemas
from core.validation import secrets_sent_elsewhere, validate_template
from gateway.auth import READ, SECRETS_WRITE, TEMPLATES_WRITE
from gateway.calls import Call, json_response
from gateway.problems import Problem
from schemas.records import TemplateRecord
from schemas.secrets import SecretBox, store_secret
from schemas.templates import template_key, template_record, trigger_type_of, write_template

TEMPLATE_STATUSES = ("ACTIVE", "DRAFT", "PAUSED")


def _iso(value) -> str | None:
    return value.isoformat() if value is not None else None


def template_json(row: asyncpg.Record, document: Any, versions: list[int] | None = None) -> dict[str, Any]:
    doc = json.loads(document) if isinstance(document, str) else document
    out = {
        "id": row["id"], "tenant_id": row["tenant_id"], "name": row["name"], "description": row["description"],
        "trigger_type": row["trigger_type"], "status": row["status"], "version": row["version"],
        "created_at": _iso(row["created_at"]), "updated_at": _iso(row["updated_at"]), "document": doc,
    }
    if versions is not None:
        out["versions"] = versions
    return out


def check_document(document: Any, known_secrets=None) -> None:
    problems = validate_template(document, known_secrets=known_secrets)
    if problems:
        errors = [p.as_dict() for p in problems]
        raise Problem(422, f"the template has {len(errors)} problem(s); first: {errors[0]['pointer'] or '/'}: "
                           f"{errors[0]['message']}", errors=errors, pointer=errors[0]["pointer"])


def _status_of(document: dict[str, Any]) -> str:
    status = document.get("status", "ACTIVE")
    if status not in TEMPLATE_STATUSES:
        raise Problem(422, f"status must be one of {', '.join(TEMPLATE_STATUSES)}", pointer="/status")
    return status


async def publish(call: Call, record: TemplateRecord) -> None:
    gw = call.gateway
    try:
        await gw.kafka().send_and_wait(gw.settings.templates_topic, gw.codec.encode(record), key=template_key(record))
    except Problem:
        raise
    except Exception as exc:
        raise Problem(503, f"the template could not be published to the engine ({type(exc).__name__}); "
                           "nothing was saved, retry") from exc


SELECT_TEMPLATE = """
SELECT t.id, t.tenant_id, t.name, t.description, t.trigger_type, t.status, t.created_at, t.updated_at,
       t.current_version AS version, v.document
FROM workflow_templates t JOIN workflow_template_versions v ON v.template_id = t.id AND v.version = t.current_version
WHERE t.id = $1 AND t.tenant_id = $2
"""


async def load_template(conn, template_id: str, tenant_id: str, *, lock: bool = False) -> asyncpg.Record:
    row = await conn.fetchrow(SELECT_TEMPLATE + (" FOR UPDATE OF t" if lock else ""), template_id, tenant_id)
    if row is None:
        raise Problem(404, f"no template {template_id!r}")
    return row


async def create_template(call: Call) -> web.Response:
    me = call.me
    me.require(TEMPLATES_WRITE, "create templates")
    document = call.body
    check_document(document)
    status = _status_of(document)
    template_id = f"wft_{uuid.uuid4().hex[:20]}"
    async with call.gateway.pool.acquire() as conn, conn.transaction():
        await write_template(conn, lambda record: publish(call, record), template_id=template_id,
                             tenant_id=me.tenant_id, document=document, status=status, created_by=me.id)
        row = await load_template(conn, template_id, me.tenant_id)
    return json_response(template_json(row, row["document"], [1]), 201)


async def instantiate_template(call: Call) -> web.Response:
    """A new template from this one's current document and an override document (`core.overrides`):
    problems of the overrides (pointers into the override document) or of the result (pointers into the
    new template) answer 422 with every one of them; else the new template is created (201)."""
    me = call.me
    me.require(TEMPLATES_WRITE, "create templates")
    async with call.gateway.pool.acquire() as conn:
        source = await load_template(conn, call.param("id"), me.tenant_id)
    try:
        document = apply_overrides(_loads_doc(source["document"]), call.body)
    except OverrideError as exc:
        errors = [{"pointer": pointer, "message": message} for pointer, message in exc.errors]
        raise Problem(422, f"the overrides have {len(errors)} problem(s); first: {errors[0]['pointer']}: "
                           f"{errors[0]['message']}", errors=errors, pointer=errors[0]["pointer"]) from None
    check_document(document)
    status = _status_of(document)
    template_id = f"wft_{uuid.uuid4().hex[:20]}"
    async with call.gateway.pool.acquire() as conn, conn.transaction():
        await write_template(conn, lambda record: publish(call, record), template_id=template_id,
                             tenant_id=me.tenant_id, document=document, status=status, created_by=me.id)
        row = await load_template(conn, template_id, me.tenant_id)
    return json_response(template_json(row, row["document"], [1]), 201)


def _loads_doc(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def encode_cursor(*parts: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps([str(p) for p in parts]).encode()).decode()


def decode_cursor(raw: str | None, size: int) -> list[str] | None:
    if raw is None:
        return None
    try:
        parts = json.loads(base64.urlsafe_b64decode(raw.encode()))
        if isinstance(parts, list) and len(parts) == size and all(isinstance(p, str) for p in parts):
            return parts
    except (ValueError, UnicodeDecodeError):
        pass
    raise _not_our_cursor()


def cursor_time(raw: str) -> datetime:
    """The time a cursor carries (its sort key); a cursor with anything else there was not made here."""
    try:
        return datetime.fromisoformat(raw)
    except ValueError:
        raise _not_our_cursor() from None


def _not_our_cursor() -> Problem:
    return Problem(400, "cursor is not one this API returned", pointer="/query/cursor")


async def list_templates(call: Call) -> web.Response:
    me = call.me
    me.require(READ, "read templates")
    limit = call.query("limit")
    status = call.query("status")
    cursor = decode_cursor(call.query("cursor"), 2)
    args: list[Any] = [me.tenant_id, limit + 1]
    where = ["t.tenant_id = $1"]
    if status:
        args.append(status)
        where.append(f"t.status = ${len(args)}")
    if cursor:
        args += [cursor_time(cursor[0]), cursor[1]]
        where.append(f"(t.created_at, t.id) < (${len(args) - 1}, ${len(args)})")
    rows = await call.gateway.pool.fetch(
        f"""SELECT t.id, t.tenant_id, t.name, t.description, t.trigger_type, t.status, t.created_at, t.updated_at,
                   t.current_version AS version, v.document
            FROM workflow_templates t JOIN workflow_template_versions v
              ON v.template_id = t.id AND v.version = t.current_version
            WHERE {' AND '.join(where)} ORDER BY t.created_at DESC, t.id DESC LIMIT $2""", *args)
    items = [template_json(r, r["document"]) for r in rows[:limit]]
    next_cursor = encode_cursor(rows[limit - 1]["created_at"].isoformat(), rows[limit - 1]["id"]) \
        if len(rows) > limit else None
    return json_response({"items": items, "next_cursor": next_cursor})


async def get_template(call: Call) -> web.Response:
    me = call.me
    me.require(READ, "read templates")
    pool = call.gateway.pool
    row = await load_template(pool, call.param("id"), me.tenant_id)
    versions = [r["version"] for r in await pool.fetch(
        "SELECT version FROM workflow_template_versions WHERE template_id = $1 ORDER BY version", row["id"])]
    version = call.query("version")
    if version is None:
        return json_response(template_json(row, row["document"], versions))
    if version not in versions:
        raise Problem(404, f"template {row['id']} has no version {version}", pointer="/query/version")
    document = await pool.fetchval("SELECT document FROM workflow_template_versions WHERE template_id = $1 "
                                   "AND version = $2", row["id"], version)
    out = template_json(row, document, versions)
    out["version"] = version
    return json_response(out)


async def update_template(call: Call) -> web.Response:
    me = call.me
    me.require(TEMPLATES_WRITE, "change templates")
    document = call.body
    template_id = call.param("id")
    async with call.gateway.pool.acquire() as conn, conn.transaction():
        row = await load_template(conn, template_id, me.tenant_id, lock=True)
        check_document(document)
        await _require_secret_confirmation(call, conn, row, document)
        status = _status_of(document)
        version = row["version"] + 1
        await conn.execute(
            """UPDATE workflow_templates SET name = $2, description = $3, trigger_type = $4, status = $5,
                   current_version = $6, updated_at = now() WHERE id = $1""",
            template_id, document["name"], str(document.get("description") or ""), trigger_type_of(document), status,
            version)
        await conn.execute("INSERT INTO workflow_template_versions (template_id, version, document, created_by) "
                           "VALUES ($1, $2, $3::jsonb, $4)", template_id, version, json.dumps(document), me.id)
        await publish(call, template_record(template_id, version, me.tenant_id, document, status))
        row = await load_template(conn, template_id, me.tenant_id)
        versions = list(range(1, version + 1))
    return json_response(template_json(row, row["document"], versions))


async def _require_secret_confirmation(call: Call, conn, row, document: Any) -> None:
    """A stored secret sent to a new destination must be named in `?confirm_secrets=a,b` (core rule)."""
    old = json.loads(row["document"]) if isinstance(row["document"], str) else row["document"]
    held = {r["secret_name"] for r in await _secret_names(conn, row["id"])}
    moved = [name for name in secrets_sent_elsewhere(old, document) if name in held]
    confirmed = {n.strip() for n in (call.query("confirm_secrets") or "").split(",") if n.strip()}
    unconfirmed = [name for name in moved if name not in confirmed]
    if unconfirmed:
        raise Problem(409, f"this version sends secret(s) {', '.join(unconfirmed)} to a destination the current "
                           f"version does not; confirm with ?confirm_secrets={','.join(unconfirmed)}",
                      title="Secrets need confirming", pointer="/query/confirm_secrets")


async def deactivate_template(call: Call) -> web.Response:
    me = call.me
    me.require(TEMPLATES_WRITE, "deactivate templates")
    template_id = call.param("id")
    async with call.gateway.pool.acquire() as conn, conn.transaction():
        row = await load_template(conn, template_id, me.tenant_id, lock=True)
        await conn.execute("UPDATE workflow_templates SET status = 'PAUSED', updated_at = now() WHERE id = $1",
                           template_id)
        document = json.loads(row["document"]) if isinstance(row["document"], str) else row["document"]
        await publish(call, template_record(template_id, row["version"], me.tenant_id, document, "PAUSED"))
        row = await load_template(conn, template_id, me.tenant_id)
    return json_response(template_json(row, row["document"]))


async def _secret_names(pool, template_id: str) -> list[asyncpg.Record]:
    return await pool.fetch("SELECT secret_name, created_at, updated_at FROM workflow_template_secrets "
                            "WHERE template_id = $1 ORDER BY secret_name", template_id)


async def validate(call: Call) -> web.Response:
    me = call.me
    me.require(TEMPLATES_WRITE, "validate templates")
    pool = call.gateway.pool
    row = await load_template(pool, call.param("id"), me.tenant_id)
    names = [r["secret_name"] for r in await _secret_names(pool, row["id"])]
    problems = validate_template(call.body, known_secrets=names)
    return json_response({"valid": not problems, "errors": [p.as_dict() for p in problems]})


async def set_secret(call: Call) -> web.Response:
    me = call.me
    me.require(SECRETS_WRITE, "configure template secrets")
    pool = call.gateway.pool
    row = await load_template(pool, call.param("id"), me.tenant_id)
    await store_secret(pool, SecretBox.from_env(), row["id"], call.body["name"], call.body["value"])
    stored = await pool.fetchrow("SELECT secret_name, created_at, updated_at FROM workflow_template_secrets "
                                 "WHERE template_id = $1 AND secret_name = $2", row["id"], call.body["name"])
    return json_response({"name": stored["secret_name"], "created_at": _iso(stored["created_at"]),
                          "updated_at": _iso(stored["updated_at"])}, 201)


async def list_secrets(call: Call) -> web.Response:
    me = call.me
    me.require(SECRETS_WRITE, "list template secrets")
    pool = call.gateway.pool
    row = await load_template(pool, call.param("id"), me.tenant_id)
    items = [{"name": r["secret_name"], "created_at": _iso(r["created_at"]), "updated_at": _iso(r["updated_at"])}
             for r in await _secret_names(pool, row["id"])]
    return json_response({"items": items})


async def list_step_types(call: Call) -> web.Response:
    call.me.require(READ, "read step types")
    return json_response({"items": list(config_schemas().values())})


HANDLERS = {
    "listStepTypes": list_step_types,
    "createTemplate": create_template,
    "instantiateTemplate": instantiate_template,
    "listTemplates": list_templates,
    "getTemplate": get_template,
    "updateTemplate": update_template,
    "deactivateTemplate": deactivate_template,
    "validateTemplate": validate,
    "setTemplateSecret": set_secret,
    "listTemplateSecrets": list_secrets,
}
