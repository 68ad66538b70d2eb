"""Writing a template and publishing it to the engine: one function for the gateway and the seed.

PostgreSQL is the system of record for templates; the engine reads them from the compacted
`workflow.templates` topic (key `<template_id>:<version>`). Writing the rows and publishing the version
belong together: the caller runs `write_template` inside its transaction, so a template the engine could
not be told about is not saved either (the publish raises, the transaction rolls back).
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from core.template import parse_trigger_type
from core.types import WorkflowStatus
from schemas.records import TemplateRecord

Publish = Callable[[TemplateRecord], Awaitable[None]]


def template_record(template_id: str, version: int, tenant_id: str, document: dict[str, Any],
                    status: str) -> TemplateRecord:
    """The record the engine's template catalog reads for one version."""
    return TemplateRecord(template_id=template_id, version=version, tenant_id=tenant_id,
                          name=str(document.get("name", "")), status=WorkflowStatus(status), document=document,
                          updated_at=int(time.time() * 1000))


def template_key(record: TemplateRecord) -> bytes:
    return f"{record.template_id}:{record.version}".encode()


def trigger_type_of(document: dict[str, Any]) -> str:
    parsed = parse_trigger_type(document.get("trigger_type", "manual"))
    return parsed.value if parsed else "MANUAL"


async def write_template(conn: Any, publish: Publish, *, template_id: str, tenant_id: str, document: dict[str, Any],
                         status: str, created_by: str, if_absent: bool = False) -> None:
    """Insert a validated template as version 1 and publish the template's current version. Run it in a
    transaction.

    With `if_absent` (the seed), an existing template keeps its versions and its status, except that
    writing it ACTIVE activates it; a write never pauses a template someone activated.
    """
    conflict = " ON CONFLICT DO NOTHING" if if_absent else ""
    activate = (""" ON CONFLICT (id) DO UPDATE SET status = 'ACTIVE', updated_at = now()
                    WHERE EXCLUDED.status = 'ACTIVE' AND workflow_templates.status <> 'ACTIVE'""" if if_absent else "")
    await conn.execute(
        """INSERT INTO workflow_templates (id, tenant_id, name, description, trigger_type, status, current_version,
               created_by) VALUES ($1, $2, $3, $4, $5, $6, 1, $7)""" + activate,
        template_id, tenant_id, document["name"], str(document.get("description") or ""), trigger_type_of(document),
        status, created_by)
    await conn.execute("INSERT INTO workflow_template_versions (template_id, version, document, created_by) "
                       "VALUES ($1, 1, $2::jsonb, $3)" + conflict, template_id, json.dumps(document), created_by)
    current = await conn.fetchrow(
        """SELECT t.tenant_id, t.status, t.current_version, v.document FROM workflow_templates t
           JOIN workflow_template_versions v ON v.template_id = t.id AND v.version = t.current_version
           WHERE t.id = $1""", template_id)
    stored = current["document"]
    await publish(template_record(template_id, current["current_version"], current["tenant_id"],
                                  json.loads(stored) if isinstance(stored, str) else stored, current["status"]))
