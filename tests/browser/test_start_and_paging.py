"""Start a workflow from the Templates tab (the manual trigger's form, only for whom may start it), and the
lists beyond one page: Active workflows and Approvals follow the API's cursors, so instance 201+ is
reachable."""

from __future__ import annotations

import asyncio
import re
import time

import pytest
from playwright.async_api import expect

from tests.browser.conftest import shot
from tests.integration.gateway.test_api import manual_procurement

pytestmark = pytest.mark.asyncio(loop_scope="session")
I = "/v1/workflows/instances"  # noqa: E741 (the name the gateway tests use)


def start_link(scope):
    return scope.get_by_role("link", name="Start", exact=True)


async def test_start_a_manual_workflow_from_templates(dashboard, world):
    tenant = await world.new_tenant()
    _, template = await world.call("POST", "/v1/workflows/templates", tenant, json=manual_procurement(), expect=201)
    page = dashboard.page
    await dashboard.sign_in(tenant, "requester")
    await dashboard.tab("Templates")
    row = page.get_by_test_id("template-row").filter(has_text=template["name"])
    await row.get_by_role("link", name="Start", exact=True).click()
    await expect(page).to_have_url(f"{dashboard.base}/templates/{template['id']}/start")
    form = page.get_by_role("form", name="Manual trigger")
    # the fields the template reads (trigger.amount in its condition, trigger.id in the payment's params)
    await form.get_by_label("amount", exact=True).fill("2500")
    await form.get_by_label("id", exact=True).fill("tr_manual_1")
    await form.get_by_role("button", name="Add field").click()
    await form.get_by_label("Extra field 1 name").fill("metadata.cost_center")
    await form.get_by_label("Extra field 1 value").fill("ops")
    key = await form.get_by_label(re.compile(r"^Idempotency key")).input_value()
    assert re.fullmatch(r"[0-9a-f-]{36}", key)
    await shot(page, "start_form")
    await form.get_by_role("button", name="Start workflow").click()
    await expect(page).to_have_url(re.compile(r"/instances/[^/]+$"))
    instance_id = page.url.rsplit("/", 1)[-1]
    await expect(page.get_by_role("heading", level=1)).to_contain_text(template["name"])
    _, detail = await world.call("GET", f"{I}/{instance_id}", tenant, expect=200)
    assert detail["trigger"] == {"amount": 2500, "id": "tr_manual_1", "metadata": {"cost_center": "ops"}}
    assert detail["source"] == "manual" and detail["initiated_by"]["id"] == tenant.ids["requester"]


async def test_start_is_offered_only_to_whom_may_start(dashboard, world):
    tenant = await world.new_tenant()
    _, allowed = await world.call("POST", "/v1/workflows/templates", tenant,
                                  json={**manual_procurement(), "name": "Agent may start"}, expect=201)
    _, other = await world.call("POST", "/v1/workflows/templates", tenant,
                                json={**manual_procurement(), "name": "Agent may not start"}, expect=201)
    await world.call("POST", f"/v1/agents/{tenant.ids['agent']}/workflow-permissions", tenant,
                     json={"workflow_permissions": {"can_initiate": [allowed["id"]]}}, expect=200)
    page = dashboard.page
    rows = page.get_by_test_id("template-row")

    await dashboard.sign_in(tenant, "viewer")  # no trigger right
    await dashboard.tab("Templates")
    await expect(rows).to_have_count(2)
    await expect(page.get_by_role("link", name="Start", exact=True)).to_have_count(0)
    await dashboard.open(f"/templates/{allowed['id']}/start")
    await expect(page.get_by_text(re.compile(r"may not start Agent may start"))).to_be_visible()
    await expect(page.get_by_role("button", name="Start workflow")).to_have_count(0)
    await dashboard.sign_out()

    await dashboard.sign_in(tenant, "agent")  # story 29.12: only the templates in its can_initiate
    await dashboard.tab("Templates")
    await expect(start_link(rows.filter(has_text="Agent may start"))).to_have_count(1)
    await expect(start_link(rows.filter(has_text="Agent may not start"))).to_have_count(0)
    await dashboard.open(f"/templates/{other['id']}/start")
    await expect(page.get_by_role("button", name="Start workflow")).to_have_count(0)
    await dashboard.sign_out()

    await world.call("DELETE", f"/v1/workflows/templates/{other['id']}", tenant, expect=200)  # PAUSED
    await dashboard.sign_in(tenant, "requester")
    await dashboard.tab("Templates")
    await expect(start_link(rows.filter(has_text="Agent may start"))).to_have_count(1)
    await expect(start_link(rows.filter(has_text="Agent may not start"))).to_have_count(0)


async def start_many(world, tenant, template_id: str, n: int) -> set[str]:
    """n instances through the API (202 each), then until the read model shows them all waiting on the CFO."""
    gate = asyncio.Semaphore(16)

    async def one(i: int) -> str:
        async with gate:
            _, accepted = await world.call("POST", I, tenant, "requester", expect=202, json={
                "template_id": template_id, "trigger_data": {"amount": 5000 + i, "id": f"tr_{i}"}})
            return accepted["instance_id"]

    ids = set(await asyncio.gather(*(one(i) for i in range(n))))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        _, pending = await world.call("GET", "/v1/workflows/pending?limit=200", tenant, "cfo", expect=200)
        seen = len(pending["items"])
        if pending["next_cursor"]:
            _, rest = await world.call("GET", f"/v1/workflows/pending?limit=200&cursor={pending['next_cursor']}",
                                       tenant, "cfo", expect=200)
            seen += len(rest["items"])
        if seen == n:
            return ids
        await asyncio.sleep(0.5)
    raise AssertionError(f"only {seen} of {n} instances reached the CFO's approval")


async def test_lists_beyond_200_rows_load_more(dashboard, world):
    tenant = await world.new_tenant()
    _, template = await world.call("POST", "/v1/workflows/templates", tenant, json=manual_procurement(), expect=201)
    ids = await start_many(world, tenant, template["id"], 205)
    page = dashboard.page

    await dashboard.sign_in(tenant, "operator")
    await dashboard.tab("Active workflows")
    rows = page.get_by_test_id("instance-row")
    await expect(rows).to_have_count(200)
    await page.get_by_role("button", name="Load more workflows").click()
    await expect(rows).to_have_count(205)
    await expect(page.get_by_role("button", name="Load more workflows")).to_have_count(0)
    shown = set(await rows.evaluate_all("rows => rows.map(r => r.dataset.instance)"))
    assert shown == ids
    await rows.nth(204).scroll_into_view_if_needed()
    await shot(page, "active_workflows_after_load_more")
    last = await rows.nth(204).get_attribute("data-instance")
    await rows.nth(204).get_by_role("link").click()  # instance 205 opens
    await expect(page).to_have_url(f"{dashboard.base}/instances/{last}")
    await expect(page.get_by_role("heading", level=1)).to_contain_text(template["name"])
    await dashboard.sign_out()

    await dashboard.sign_in(tenant, "cfo")
    pending = page.get_by_test_id("pending-row")
    await expect(pending).to_have_count(200)
    await page.get_by_role("button", name="Load more approvals").click()
    await expect(pending).to_have_count(205)
    await expect(page.get_by_role("button", name="Load more approvals")).to_have_count(0)


async def test_pipelines_link_to_every_failed_instance_in_the_paged_list(dashboard, world):
    tenant = await world.new_tenant()
    _, template = await world.call("POST", "/v1/workflows/templates", tenant, json=manual_procurement(), expect=201)
    page = dashboard.page
    await dashboard.sign_in(tenant, "operator")
    await dashboard.tab("Pipelines")
    await page.get_by_role("link", name="Every failed instance of this template").click()
    await expect(page).to_have_url(re.compile(rf"/instances\?template_id={template['id']}&status=FAILED$"))
    await expect(page.get_by_label("Status")).to_have_value("FAILED")
    await expect(page.get_by_label("Template")).to_have_value(template["id"])
