"""Agent workflow permissions (story 29.12): what an agent may start and approve, per template.

The shape is the story's: `{"can_initiate": [template ids], "can_approve": {template id: {"max_amount": n,
"step_names": [...]}}}`; templates may be named by id, slug or name as in the story's example
(`"procurement_approval"`), and are stored and returned by id. POST replaces the agent's whole set. The
gateway copies the `can_approve` entry of
the instance's template into the Actor it sends (`ApprovalLimits`), so the engine decides deterministically.
"""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web

from core.agent_signing import parse_public_key, raw_public_key
from core.approvers import parse_window
from gateway.auth import AGENTS_WRITE, Principal
from gateway.calls import Call, json_response
from gateway.problems import Problem
from gateway.templates import decode_cursor, encode_cursor


async def _agent(call: Call, me: Principal) -> str:
    agent_id = call.param("id")
    found = await call.gateway.pool.fetchval(
        "SELECT 1 FROM principals WHERE id = $1 AND tenant_id = $2 AND kind = 'agent'", agent_id, me.tenant_id)
    if not found:
        raise Problem(404, f"no agent {agent_id!r}")
    return agent_id


def slug(name: str) -> str:
    """"Procurement Approval" -> "procurement_approval": how the spec names templates (story 29.12)."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


async def resolve_templates(pool, tenant_id: str, references: set[str]) -> tuple[dict[str, str], dict[str, str]]:
    """({reference: template id}, {reference: why it names no template}) within the tenant.

    A reference is a template id (`wft_...`, or a seeded built-in's `wf_procurement_approval`), or, as in
    the spec's example permission document, a slug (`procurement_approval`: the seeded `wf_<slug>` or a
    template whose name slugs to it) or the name itself. Several templates with one slug: the single
    ACTIVE one, else the reference is ambiguous and refused, never guessed.
    """
    if not references:
        return {}, {}
    rows = await pool.fetch("SELECT id, name, status FROM workflow_templates WHERE tenant_id = $1", tenant_id)
    ids = {r["id"] for r in rows}
    resolved: dict[str, str] = {}
    unknown: dict[str, str] = {}
    for ref in references:
        if ref in ids:
            resolved[ref] = ref
            continue
        wanted = slug(ref)
        matches = [r for r in rows if wanted and (slug(r["name"]) == wanted or r["id"] == f"wf_{wanted}")]
        if len(matches) > 1:
            active = [r for r in matches if r["status"] == "ACTIVE"]
            matches = active if len(active) == 1 else matches
        if len(matches) == 1:
            resolved[ref] = matches[0]["id"]
        elif matches:
            unknown[ref] = f"template {ref!r} is ambiguous ({', '.join(sorted(r['id'] for r in matches))}); use an id"
        else:
            unknown[ref] = f"no template {ref!r}"
    return resolved, unknown


async def permissions_of(pool, agent_id: str) -> dict[str, Any]:
    rows = await pool.fetch("SELECT template_id, can_initiate, can_approve, approval_conditions FROM "
                            "agent_workflow_permissions WHERE agent_id = $1 ORDER BY template_id", agent_id)
    can_approve = {}
    for r in rows:
        if r["can_approve"]:
            conditions = json.loads(r["approval_conditions"]) if isinstance(r["approval_conditions"], str) \
                else (r["approval_conditions"] or {})
            can_approve[r["template_id"]] = _conditions(conditions)
    return {"agent_id": agent_id, "workflow_permissions": {
        "can_initiate": [r["template_id"] for r in rows if r["can_initiate"]], "can_approve": can_approve}}


BOUNDS_DEFAULTS: dict[str, Any] = {"currencies": [], "hours": [], "counts_toward_quorum": True,
                                   "escalate_above_limit": True, "daily_budget": None}


def _conditions(given: dict[str, Any]) -> dict[str, Any]:
    """One can_approve entry with every bound spelled out (core/actors.py ApprovalLimits says what each does)."""
    out = {"max_amount": given.get("max_amount"), "step_names": list(given.get("step_names") or [])}
    for name, default in BOUNDS_DEFAULTS.items():
        value = given.get(name, default)
        out[name] = list(value) if isinstance(default, list) else value
    return out


async def get_permissions(call: Call) -> web.Response:
    me = call.me
    if call.param("id") != me.id:
        me.require(AGENTS_WRITE, "read other agents' permissions")
    agent_id = await _agent(call, me)
    return json_response(await permissions_of(call.gateway.pool, agent_id))


async def set_permissions(call: Call) -> web.Response:
    me = call.me
    me.require(AGENTS_WRITE, "configure agent permissions")
    agent_id = await _agent(call, me)
    body = call.body
    if body.get("agent_id") not in (None, agent_id):
        raise Problem(422, f"agent_id in the body must match the path ({agent_id})", pointer="/agent_id")
    wanted = body["workflow_permissions"]
    initiate = list(dict.fromkeys(wanted.get("can_initiate") or []))
    approve = wanted.get("can_approve") or {}
    pool = call.gateway.pool
    resolved, unknown = await resolve_templates(pool, me.tenant_id, set(initiate) | set(approve))
    errors = [{"pointer": f"/workflow_permissions/can_initiate/{i}", "message": unknown[t]}
              for i, t in enumerate(initiate) if t in unknown]
    errors += [{"pointer": "/workflow_permissions/can_approve/" + t.replace("~", "~0").replace("/", "~1"),
                "message": unknown[t]} for t in approve if t in unknown]
    for t, conditions in approve.items():
        for i, window in enumerate(conditions.get("hours") or []):
            try:
                parse_window(window)
            except ValueError as exc:
                errors.append({"pointer": "/workflow_permissions/can_approve/" + t.replace("~", "~0")
                               .replace("/", "~1") + f"/hours/{i}", "message": str(exc)})
    if errors:
        raise Problem(422, f"{len(errors)} invalid permission(s); first: {errors[0]['pointer']}: "
                           f"{errors[0]['message']}", errors=errors, pointer=errors[0]["pointer"])
    initiate = list(dict.fromkeys(resolved[t] for t in initiate))
    approve = {resolved[t]: conditions for t, conditions in approve.items()}
    ids = set(initiate) | set(approve)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("DELETE FROM agent_workflow_permissions WHERE agent_id = $1", agent_id)
        rows = []
        for template_id in sorted(ids):
            conditions = approve.get(template_id)
            rows.append((agent_id, me.tenant_id, template_id, template_id in initiate, conditions is not None,
                         json.dumps(_conditions(conditions)) if conditions is not None else None))
        await conn.executemany(
            """INSERT INTO agent_workflow_permissions (agent_id, tenant_id, template_id, can_initiate, can_approve,
                   approval_conditions) VALUES ($1, $2, $3, $4, $5, $6::jsonb)""", rows)
    return json_response(await permissions_of(pool, agent_id))


async def get_key(call: Call) -> web.Response:
    me = call.me
    if call.param("id") != me.id:
        me.require(AGENTS_WRITE, "read other agents' keys")
    agent_id = await _agent(call, me)
    key = await call.gateway.pool.fetchval("SELECT public_key FROM principals WHERE id = $1", agent_id)
    return json_response({"agent_id": agent_id, "public_key": key})


async def set_key(call: Call) -> web.Response:
    """Admin only: an agent that could replace its own key could disown what it signed."""
    me = call.me
    me.require(AGENTS_WRITE, "register agent keys")
    agent_id = await _agent(call, me)
    try:
        key = raw_public_key(parse_public_key(call.body["public_key"]))
    except ValueError as exc:
        raise Problem(422, str(exc), pointer="/public_key") from None
    await call.gateway.pool.execute("UPDATE principals SET public_key = $2 WHERE id = $1", agent_id, key)
    return json_response({"agent_id": agent_id, "public_key": key})


async def list_agents(call: Call) -> web.Response:
    """GET /v1/agents: the tenant's agents, by id (admin only). The dashboard's Security page picks an agent here
    to read its access log; an admin could otherwise only guess agent ids."""
    me = call.me
    me.require(AGENTS_WRITE, "list agents")
    limit = call.query("limit")
    args: list[Any] = [me.tenant_id]
    where = "tenant_id = $1 AND kind = 'agent'"
    cursor = decode_cursor(call.query("cursor"), 1)
    if cursor:
        args.append(cursor[0])
        where += f" AND id > ${len(args)}"
    args.append(limit + 1)
    rows = await call.gateway.pool.fetch(
        f"SELECT id, display_name, roles, public_key IS NOT NULL AS has_key FROM principals WHERE {where} "
        f"ORDER BY id LIMIT ${len(args)}", *args)
    items = [{"id": r["id"], "display_name": r["display_name"], "roles": list(r["roles"]),
              "has_public_key": r["has_key"]} for r in rows[:limit]]
    next_cursor = encode_cursor(rows[limit - 1]["id"]) if len(rows) > limit else None
    return json_response({"items": items, "next_cursor": next_cursor})


HANDLERS = {"listAgents": list_agents, "getAgentPermissions": get_permissions, "setAgentPermissions": set_permissions,
            "getAgentKey": get_key, "setAgentKey": set_key}
