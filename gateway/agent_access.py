"""The two audit logs that are not an instance's trail: the agents' access log and the tenant's security log.

The agents' access log (issue 14 residual): every API call an agent makes, reads included, kept in
PostgreSQL (`agent_access_log`, migration 0012) and readable by an admin at `GET /v1/agents/{id}/access-log`.

Why: an agent reads payment data (trigger amounts, vendors, reasons) through MCP tools, which are API calls
with its token. Its commands are in the instances' audit trail; its reads changed nothing and left only a log
line in the gateway's process log, which rotates and is not queryable per agent or conversation. A payment
team reviewing an agent must be able to ask "what did it look at, in which conversation". People's reads are
not recorded: the story's audit trail is of workflow actions, and agents are the actors it was extended to
(issue 14: "every MCP call is audited like an API call, with the agent and conversation").

The row is written before the response leaves (`_endpoint` in gateway/app.py awaits `record`), so a read
the agent got an answer to is in the log; if PostgreSQL is down the request failed with 503 anyway, and the
write's own failure is logged, never turned into a second error.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from aiohttp import web

from gateway.auth import AGENTS_WRITE, AUDIT_READ, Principal
from gateway.calls import Call, json_response
from gateway.problems import Problem
from gateway.templates import _iso, decode_cursor, encode_cursor

log = logging.getLogger("flowline.gateway.audit")
CONVERSATION_HEADER = "X-Flowline-Conversation-Id"

INSERT = """INSERT INTO agent_access_log (tenant_id, agent_id, operation, method, path, status, conversation_id,
    client) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"""


async def record(pool: Any, principal: Principal, request: web.Request, operation: str, status: int) -> None:
    """One row for one request of an agent (the caller checks `principal.is_agent`)."""
    try:
        await pool.execute(INSERT, principal.tenant_id, principal.id, operation, request.method,
                           request.path[:1000], status, (request.headers.get(CONVERSATION_HEADER) or "")[:200]
                           or None, request.headers.get("User-Agent", "")[:200] or None)
    except Exception as exc:  # the answer stands; the gap is visible in the process log
        log.error("agent access not recorded: %s %s principal=%s status=%s: %r", request.method, request.path,
                  principal.id, status, exc)


async def access_log(call: Call) -> web.Response:
    """GET /v1/agents/{id}/access-log: the agent's calls, newest first (admin, or the agent itself)."""
    me = call.me
    agent_id = call.param("id")
    if agent_id != me.id:
        me.require(AGENTS_WRITE, "read agents' access logs")
    pool = call.gateway.pool
    if not await pool.fetchval("SELECT 1 FROM principals WHERE id = $1 AND tenant_id = $2 AND kind = 'agent'",
                               agent_id, me.tenant_id):
        raise Problem(404, f"no agent {agent_id!r}")
    limit = call.query("limit")
    args: list[Any] = [me.tenant_id, agent_id]
    where = ["tenant_id = $1", "agent_id = $2"]
    conversation = call.query("conversation_id")
    if conversation is not None:
        args.append(conversation)
        where.append(f"conversation_id = ${len(args)}")
    cursor = decode_cursor(call.query("cursor"), 1)
    if cursor:
        if not cursor[0].isdigit():
            raise Problem(400, "cursor is not one this API returned", pointer="/query/cursor")
        args.append(int(cursor[0]))
        where.append(f"id < ${len(args)}")
    args.append(limit + 1)
    rows = await pool.fetch(f"SELECT * FROM agent_access_log WHERE {' AND '.join(where)} ORDER BY id DESC "
                            f"LIMIT ${len(args)}", *args)
    items = [{"at": _iso(r["at"]), "operation": r["operation"], "method": r["method"], "path": r["path"],
              "status": r["status"], "conversation_id": r["conversation_id"], "client": r["client"]}
             for r in rows[:limit]]
    next_cursor = encode_cursor(rows[limit - 1]["id"]) if len(rows) > limit else None
    return json_response({"agent_id": agent_id, "items": items, "next_cursor": next_cursor})


async def security_log(call: Call) -> web.Response:
    """GET /v1/security-log: what the tenant's own principals tried against other tenants, newest first.

    The engine refuses a command whose actor belongs to another tenant outside that instance's sequence, and
    the projector records it here under the actor's tenant (store/projection.py, migration 0012), never in
    the victim's audit trail. Admins only (`audit:read`)."""
    me = call.me
    me.require(AUDIT_READ, "read the security log")
    limit = call.query("limit")
    args: list[Any] = [me.tenant_id]
    where = "tenant_id = $1"
    cursor = decode_cursor(call.query("cursor"), 2)
    if cursor:
        try:
            at = datetime.fromisoformat(cursor[0])
        except ValueError:
            raise Problem(400, "cursor is not one this API returned", pointer="/query/cursor") from None
        args += [at, cursor[1]]
        where += " AND (at, command_id) < ($2, $3)"
    args.append(limit + 1)
    rows = await call.gateway.pool.fetch(f"SELECT * FROM security_log WHERE {where} ORDER BY at DESC, command_id "
                                         f"DESC LIMIT ${len(args)}", *args)
    items = [{"at": _iso(r["at"]), "kind": r["kind"], "actor_id": r["actor_id"], "command_type": r["command_type"],
              "instance_id": r["instance_id"], "reason": r["reason"], "command_id": r["command_id"]}
             for r in rows[:limit]]
    last = rows[limit - 1] if len(rows) > limit else None
    next_cursor = encode_cursor(last["at"].isoformat(), last["command_id"]) if last is not None else None
    return json_response({"items": items, "next_cursor": next_cursor})


HANDLERS = {"getAgentAccessLog": access_log, "getSecurityLog": security_log}
