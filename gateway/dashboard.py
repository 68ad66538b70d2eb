"""The dashboard: its built front-end under `/`, and the reads only a browser session needs.

The front-end (`dashboard/`, TypeScript + React, ADR 8) is built by `deploy/stack` into `dashboard/dist`;
the gateway serves those files as they are, so nothing is fetched at run time. Every GET that no API route
matches, outside `/v1/` and the gateway's own pages, answers `index.html`, because the browser
routes (`/instances/<id>`, `/templates/<id>`) belong to the front-end and a reload must land on it.

The API operations here follow the same rules as every other (`gateway.openapi`):
- `getMe` tells the signed-in principal its tenant, roles and permissions, so the page can hide what the
  server would refuse anyway (the server stays the authority: a hidden button is a courtesy, not a check);
  for an agent also the templates it may start (`can_initiate`; `gateway.instances.trigger` enforces it).
- `listMyDecisions` is the caller's own decision history (the Approvals tab), from the audit trail.
- `validateDocument` checks a template that has no id yet (the builder's "new template"); a saved template
  is checked by `validateTemplate`, which also knows its secrets.
"""

from __future__ import annotations

import json
from pathlib import Path

from aiohttp import web

from core.validation import validate_template
from gateway.auth import READ, TEMPLATES_WRITE
from gateway.calls import Call, json_response
from schemas.settings import env

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DIST = ROOT / "dashboard" / "dist"
# Prefixes the front-end never owns: an unknown API path must stay a 404 problem, not the app's HTML.
SERVER_PREFIXES = ("/v1/", "/health", "/metrics", "/docs")
NOT_BUILT = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Flowline</title></head>
<body><h1>The dashboard is not built</h1><p>Run <code>deploy/stack up</code> (it builds it), or
<code>cd dashboard &amp;&amp; npm ci &amp;&amp; npm run build</code>. The API is at <a href="/docs">/docs</a>.</p>
</body></html>"""


def dist_dir() -> Path:
    return Path(env("FLOWLINE_DASHBOARD_DIR") or DEFAULT_DIST)


def front_end(dist: Path | None = None):
    """A middleware that answers GET requests no API route matched with the built front-end.

    A middleware rather than a catch-all route, so the router holds exactly the documented operations
    and a wrong method on an API path still answers 405.
    """
    root = (dist or dist_dir()).resolve()

    @web.middleware
    async def serve(request: web.Request, handler):
        path = request.path
        missing = request.match_info.http_exception
        unmatched = missing is not None and missing.status == 404
        if not unmatched or request.method not in ("GET", "HEAD") or path.startswith(SERVER_PREFIXES):
            return await handler(request)
        index = root / "index.html"
        if not index.is_file():
            return web.Response(status=503, text=NOT_BUILT, content_type="text/html")
        candidate = (root / path.lstrip("/")).resolve()
        if path != "/" and candidate.is_file() and candidate.is_relative_to(root):
            # Vite puts a content hash in every asset name under assets/, so those never change.
            immutable = candidate.parent == root / "assets"
            cache = "public, max-age=31536000, immutable" if immutable else "no-cache"
            return web.FileResponse(candidate, headers={"Cache-Control": cache})
        if path.startswith("/assets/"):
            return await handler(request)  # a missing asset is a stale page, not a client route: 404
        return web.FileResponse(index, headers={"Cache-Control": "no-cache"})

    return serve


async def get_me(call: Call) -> web.Response:
    me = call.me
    me.require(READ, "read")
    initiate = None
    if me.is_agent:
        rows = await call.gateway.pool.fetch("SELECT template_id FROM agent_workflow_permissions WHERE agent_id = $1 "
                                             "AND tenant_id = $2 AND can_initiate ORDER BY template_id",
                                             me.id, me.tenant_id)
        initiate = [r["template_id"] for r in rows]
    return json_response({"id": me.id, "tenant_id": me.tenant_id, "kind": me.kind, "roles": list(me.roles),
                          "display_name": me.display_name, "permissions": sorted(me.permissions),
                          "can_initiate": initiate})


async def validate_document(call: Call) -> web.Response:
    call.me.require(TEMPLATES_WRITE, "validate templates")
    problems = validate_template(call.body, known_secrets=None)
    return json_response({"valid": not problems, "errors": [p.as_dict() for p in problems]})


async def my_decisions(call: Call) -> web.Response:
    """The caller's own approval decisions, newest first (the Approvals tab's history)."""
    me = call.me
    me.require(READ, "read decisions")
    limit = call.query("limit")
    rows = await call.gateway.pool.fetch(
        """SELECT t.instance_id, t.step, t.reasoning, t.details, t.at, i.template_id, i.template_name, i.status,
                  s.name AS step_name
           FROM workflow_transitions t JOIN workflow_instances i ON i.id = t.instance_id
           LEFT JOIN LATERAL (SELECT name FROM workflow_step_executions s
                              WHERE s.instance_id = t.instance_id AND s.step = t.step LIMIT 1) s ON true
           WHERE t.tenant_id = $1 AND t.actor_id = $2 AND t.event_type = 'DecisionRecorded'
           ORDER BY t.at DESC LIMIT $3""", me.tenant_id, me.id, limit)
    items = []
    for r in rows:
        details = json.loads(r["details"]) if isinstance(r["details"], str) else (r["details"] or {})
        items.append({"instance_id": r["instance_id"], "template_id": r["template_id"],
                      "template_name": r["template_name"], "instance_status": r["status"], "step": r["step"],
                      "step_name": r["step_name"] or "", "decision": str(details.get("decision", "")),
                      "reasoning": r["reasoning"], "at": r["at"].isoformat()})
    return json_response({"items": items})


HANDLERS = {"getMe": get_me, "validateDocument": validate_document, "listMyDecisions": my_decisions}
