"""The Templates tab and the builder: every built-in template opens in the forms and saves unchanged."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from core.builtin import BUILTIN_NAMES, builtin_template

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.mark.parametrize("name", BUILTIN_NAMES)
async def test_builtin_template_round_trips_through_the_builder(dashboard, world, name):
    tenant = await world.new_tenant()
    original = builtin_template(name)
    _, created = await world.call("POST", "/v1/workflows/templates", tenant, json=original, expect=201)
    await dashboard.sign_in(tenant, "admin")
    await dashboard.tab("Templates")
    row = dashboard.page.get_by_test_id("template-row").filter(has_text=original["name"])
    await row.get_by_role("link", name=original["name"]).click()
    page = dashboard.page
    await expect(page.get_by_role("heading", level=1)).to_contain_text(original["name"])
    await expect(page.get_by_test_id("validity")).to_have_text("valid")
    # walk through every step's form, so each editor renders its values
    for i, step in enumerate(original["steps"], start=1):
        await page.get_by_role("button", name=f"{i}. {step['name']}").click()
        await expect(page.get_by_label("Step name")).to_have_value(step["name"])
    await page.get_by_role("button", name="Save as new version").click()
    await expect(page).to_have_url(f"{dashboard.base}/templates/{created['id']}/2")
    _, saved = await world.call("GET", f"/v1/workflows/templates/{created['id']}?version=2", tenant, expect=200)
    assert saved["document"] == original


async def test_builder_edits_draw_the_graph_and_activate_deactivate(dashboard, world):
    tenant = await world.new_tenant()
    _, created = await world.call("POST", "/v1/workflows/templates", tenant,
                                  json=builtin_template("procurement_approval"), expect=201)
    await dashboard.sign_in(tenant, "admin")
    await dashboard.open(f"/templates/{created['id']}/1")
    page = dashboard.page
    graph = page.get_by_role("figure", name="Template graph")
    await expect(graph.get_by_label("Step 4, action: Execute Payment")).to_be_attached()
    # keyboard only: focus a control and press Enter (no drag-only action in the builder)
    await page.get_by_role("button", name="Move step 4 up").focus()
    await page.keyboard.press("Enter")
    await expect(graph.get_by_label("Step 3, action: Execute Payment", exact=False)).to_be_attached()
    await page.get_by_role("button", name="Remove step 3").focus()
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("button", name="3. Manager Approval")).to_be_visible()
    await page.get_by_role("button", name="Deactivate").click()
    await expect(page.get_by_role("heading", level=1)).to_contain_text("PAUSED")
    await page.get_by_role("button", name="Activate").click()
    await expect(page.get_by_role("heading", level=1)).to_contain_text("ACTIVE")
    await expect(page).to_have_url(f"{dashboard.base}/templates/{created['id']}/2")
    diff = page.get_by_role("region", name="Compare versions")
    await expect(diff.get_by_test_id("diff-summary")).not_to_have_text("0 changed line(s)")
    await expect(diff.locator("tr.removed")).to_contain_text(["Execute Payment"])
    secrets = page.get_by_role("region", name="Secrets")
    await secrets.get_by_label("Secret name").fill("erp_key")
    await secrets.get_by_label("Secret value").fill("s3cr3t-value")
    await secrets.get_by_role("button", name="Store secret").click()
    await expect(secrets.get_by_role("listitem")).to_contain_text(["erp_key"])
    await expect(secrets.get_by_label("Secret value")).to_have_value("")
    assert "s3cr3t-value" not in await page.content()
    _, current = await world.call("GET", f"/v1/workflows/templates/{created['id']}", tenant, expect=200)
    assert current["status"] == "ACTIVE" and [s["name"] for s in current["document"]["steps"]] == [
        "Check Amount Tier", "CFO Approval", "Manager Approval"]
