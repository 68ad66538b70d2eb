"""Agent workflow permissions (story 29.12): what an agent may start and approve, per template.

The shape is the story's: `{"can_initiate": [template ids], "can_approve": {template id: {"max_amount": n,
"step_names": [...]}}}`. POST replaces the agent's whole set. The gateway copies the `can_approve` entry of
the instance's template into the Actor it sends (`ApprovalLimits`), so the engine decides deterministically.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from gateway.app import Call, json_response
from gateway.auth import AGENTS_WRITE, Principal
from gateway.problems import Problem


async def _agent(call: Call, me: Principal) -> str:
    agent_id = call.param("id")
    found = await call.gateway.pool.fetchval(
        "SELECT 1 FROM principals WHERE id = $1 AND tenant_id = $2 AND kind = 'agent'", agent_id, me.tenant_id)
    if not found:
        raise Problem(404, f"no agent {agent_id!r}")
    return agent_id


async def permissions_of(pool, agent_id: str) -> dict[str, Any]:
    rows = await pool.fetch("SELECT template_id, can_initiate, can_approve, approval_conditions FROM "
                            "agent_workflow_permissions WHERE agent_id = $1 ORDER BY template_id", agent_id)
    can_approve = {}
    for r in rows:
        if r["can_approve"]:
            conditions = json.loads(r["approval_conditions"]) if isinstance(r["approval_conditions"], str) \
                else (r["approval_conditions"] or {})
            can_approve[r["template_id"]] = {"max_amount": conditions.get("max_amount"),
                                             "step_names": list(conditions.get("step_names") or [])}
    return {"agent_id": agent_id, "workflow_permissions": {
        "can_initiate": [r["template_id"] for r in rows if r["can_initiate"]], "can_approve": can_approve}}


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
    ids = set(initiate) | set(approve)
    known = {r["id"] for r in await pool.fetch("SELECT id FROM workflow_templates WHERE tenant_id = $1 AND "
                                               "id = ANY($2)", me.tenant_id, list(ids))}
    errors = [{"pointer": f"/workflow_permissions/can_initiate/{i}", "message": f"no template {t!r}"}
              for i, t in enumerate(initiate) if t not in known]
    errors += [{"pointer": "/workflow_permissions/can_approve/" + t.replace("~", "~0").replace("/", "~1"),
                "message": f"no template {t!r}"} for t in approve if t not in known]
    if errors:
        raise Problem(422, f"{len(errors)} unknown template(s); first: {errors[0]['pointer']}", errors=errors,
                      pointer=errors[0]["pointer"])
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("DELETE FROM agent_workflow_permissions WHERE agent_id = $1", agent_id)
        rows = []
        for template_id in sorted(ids):
            conditions = approve.get(template_id)
            rows.append((agent_id, me.tenant_id, template_id, template_id in initiate, conditions is not None,
                         json.dumps({"max_amount": conditions.get("max_amount"),
                                     "step_names": conditions.get("step_names") or []}) if conditions is not None
                         else None))
        await conn.executemany(
            """INSERT INTO agent_workflow_permissions (agent_id, tenant_id, template_id, can_initiate, can_approve,
                   approval_conditions) VALUES ($1, $2, $3, $4, $5, $6::jsonb)""", rows)
    return json_response(await permissions_of(pool, agent_id))


HANDLERS = {"getAgentPermissions": get_permissions, "setAgentPermissions": set_permissions}
