"""axe-core (the npm package in dashboard/node_modules, injected into the page) on every view: no
critical or serious violation. Runs signed in as an operator over a tenant with one waiting instance."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from playwright.async_api import expect

from core.builtin import builtin_template
from tests.integration.gateway.test_api import manual_procurement

pytestmark = pytest.mark.asyncio(loop_scope="session")
AXE = Path(__file__).resolve().parents[2] / "dashboard" / "node_modules" / "axe-core" / "axe.min.js"


async def violations(page) -> list[dict]:
    if not AXE.is_file():
        pytest.fail("axe-core is missing: deploy/stack test installs the dashboard's node modules (npm ci)")
    await page.add_script_tag(path=str(AXE))
    result = await page.evaluate("async () => (await axe.run(document, {resultTypes: ['violations']})).violations")
    return [{"id": v["id"], "impact": v["impact"], "help": v["help"],
             "nodes": [n["target"] for n in v["nodes"]][:5]}
            for v in result if v["impact"] in ("critical", "serious")]


async def test_no_serious_accessibility_violation_on_any_view(dashboard, world):
    tenant = await world.new_tenant()
    _, template = await world.call("POST", "/v1/workflows/templates", tenant, json=manual_procurement(), expect=201)
    _, started = await world.call("POST", "/v1/workflows/instances?wait=true", tenant, "requester", json={
        "template_id": template["id"], "trigger_data": {"id": "tr_a11y", "amount": 5000}}, expect=201)
    _, machine = await world.call("POST", "/v1/workflows/templates", tenant,
                                  json=builtin_template("model_deployment_sm"), expect=201)
    page = dashboard.page
    await dashboard.open("/")
    await expect(page.get_by_label("API token")).to_be_visible()
    found = {"sign in": await violations(page)}
    await dashboard.sign_in(tenant, "admin")
    views = {
        "approvals": ("/", "My approvals"),
        "active workflows": ("/instances", "Active workflows"),
        "instance": (f"/instances/{started['id']}", "Procurement Approval"),
        "pipelines": ("/pipelines", "Pipelines"),
        "templates": ("/templates", "Templates"),
        "builder": (f"/templates/{template['id']}/1", "Procurement Approval"),
        "new template": ("/templates/new", "New template"),
        "state-machine builder": (f"/templates/{machine['id']}/1", "Model Deployment"),
        "start": (f"/templates/{template['id']}/start", "Start Procurement Approval"),
        "analytics": ("/analytics", "Analytics"),
    }
    for name, (path, heading) in views.items():
        await dashboard.open(path)
        await expect(page.get_by_role("heading", level=1)).to_contain_text(heading)
        await page.wait_for_load_state("networkidle")
        found[name] = await violations(page)
    bad = {name: v for name, v in found.items() if v}
    assert not bad, json.dumps(bad, indent=1)
