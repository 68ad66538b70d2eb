"""Nested step config through forms drawn from the step types' JSON Schemas (GET /v1/workflows/step-types),
never typed as JSON: headers and extract_fields as rows, retries as a labelled form, an escalation on
timeout with its approvers, a list of email recipients; the raw JSON view follows every edit."""

from __future__ import annotations

import json
import re

import pytest
from playwright.async_api import expect

from tests.browser.conftest import shot
from tests.browser.test_procurement_flow import add_step

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_procurement_and_an_external_step_built_with_forms_only(dashboard, world):
    tenant = await world.new_tenant()
    page = dashboard.page
    await dashboard.sign_in(tenant, "admin")
    await dashboard.open("/templates/new")
    await page.get_by_label("Name", exact=True).fill("Procurement with ERP lookup")
    await page.get_by_label("Trigger", exact=True).select_option("on_transfer")
    await page.get_by_role("button", name="Add condition").click()
    await page.get_by_label("Condition 1 field").fill("metadata.type")
    await page.get_by_label("Condition 1 value").fill("procurement")

    # the ERP lookup: URL, method, headers, retries and extract_fields, all through forms
    await add_step(page, "external", "Fetch Purchase Order")
    await page.get_by_label("Step id (optional, for steps.ID in expressions)").fill("po")
    await page.get_by_label("URL", exact=True).fill("https://erp.example.com/api/purchase-orders/{{trigger.id}}")
    await page.get_by_label("Method").select_option("GET")
    await page.get_by_role("button", name="Add headers entry").click()
    await page.get_by_label("Headers name 1").fill("Authorization")
    await page.get_by_label("Headers value 1").fill("Bearer {{secrets.erp_token}}")
    await page.get_by_role("button", name="Add headers entry").click()
    await page.get_by_label("Headers name 2").fill("Accept")
    await page.get_by_label("Headers value 2").fill("application/json")
    retries = page.get_by_role("group", name="Retries")
    await retries.get_by_label("Retries max retries").fill("4")
    await retries.get_by_label("Retries backoff ms").fill("2000")
    # keyboard only: the add-row button is reached and pressed without a mouse
    await page.get_by_role("button", name="Add extract fields entry").focus()
    await page.keyboard.press("Enter")
    await page.get_by_label("Extract fields name 1").focus()
    await page.keyboard.type("po_amount")
    await page.get_by_label("Extract fields value 1").fill("response.body.total_amount")
    await page.get_by_role("button", name="Add extract fields entry").click()
    await page.get_by_label("Extract fields name 2").fill("vendor")
    await page.get_by_label("Extract fields value 2").fill("response.body.vendor")
    # a row removed again
    await page.get_by_role("button", name="Add extract fields entry").click()
    await page.get_by_label("Extract fields name 3").fill("unused")
    await page.get_by_role("button", name="Remove Extract fields entry 3").click()
    await expect(page.get_by_label("Extract fields name 3")).to_have_count(0)
    assert await page.get_by_label(re.compile(r"\(JSON\)$")).count() == 0  # nothing needed a JSON box
    await shot(page, "nested_config_external_step_forms")

    await add_step(page, "condition", "Check Amount Tier")
    await page.get_by_label("Expression", exact=True).fill("steps.po.po_amount <= 1000")
    await add_step(page, "approval", "CFO Approval")
    await page.get_by_label("Approvers type").select_option("role")
    await page.get_by_label("Approvers value").fill("cfo")
    await page.get_by_label("Timeout (hours)", exact=True).fill("48")
    # escalation on timeout: an object with its own approvers, chosen as a shape, then filled in
    await page.get_by_label("On timeout shape").select_option(label="an object")
    await page.get_by_label("On timeout action").select_option("escalate")
    await page.get_by_label("On timeout approvers type").select_option("role")
    await page.get_by_label("On timeout approvers value", exact=True).fill("ceo")
    await page.get_by_label("On timeout timeout hours").fill("24")
    await page.get_by_label("On timeout then").select_option("fail")
    await add_step(page, "approval", "Manager Approval")
    await page.get_by_label("Approvers type").select_option("role")
    await page.get_by_label("Approvers value").fill("finance_manager")
    await page.get_by_label("Timeout (hours)", exact=True).fill("24")
    await add_step(page, "action", "Execute Payment")
    await page.get_by_label("Action", exact=True).select_option("execute_transfer")
    await page.get_by_role("button", name="Add parameters entry").click()
    await page.get_by_label("Parameters name 1").fill("transfer_id")
    await page.get_by_label("Parameters value 1").fill("{{trigger.id}}")
    await add_step(page, "notification", "Tell Finance")
    await page.get_by_label("Channel", exact=True).select_option("email")
    await page.get_by_label("Webhook URL").fill("x")
    await page.get_by_label("Webhook URL").fill("")
    await page.get_by_label("To (address or list) shape").select_option(label="a list")
    await page.get_by_role("button", name="Add to (address or list) item").click()
    await page.get_by_label("To (address or list) 1").fill("finance@example.com")
    await page.get_by_role("button", name="Add to (address or list) item").click()
    await page.get_by_label("To (address or list) 2").fill("audit@example.com")
    await page.get_by_label("Subject").fill("Paid {{trigger.id}}")
    await page.get_by_role("button", name="2. Check Amount Tier").click()
    await page.get_by_label("If true").select_option(label="skip to 4. Manager Approval")
    await expect(page.get_by_test_id("validity")).to_have_text("valid")

    expected = {
        "name": "Procurement with ERP lookup", "trigger_type": "on_transfer",
        "trigger_config": {"conditions": [{"field": "metadata.type", "op": "eq", "value": "procurement"}]},
        "steps": [
            {"type": "external", "name": "Fetch Purchase Order", "id": "po", "config": {
                "url": "https://erp.example.com/api/purchase-orders/{{trigger.id}}", "method": "GET",
                "headers": {"Authorization": "Bearer {{secrets.erp_token}}", "Accept": "application/json"},
                "retry_config": {"max_retries": 4, "backoff_ms": 2000},
                "extract_fields": {"po_amount": "response.body.total_amount", "vendor": "response.body.vendor"}}},
            {"type": "condition", "name": "Check Amount Tier",
             "config": {"expression": "steps.po.po_amount <= 1000", "if_true": "skip_to:4"}},
            {"type": "approval", "name": "CFO Approval", "config": {
                "approvers": {"type": "role", "value": "cfo"}, "timeout_hours": 48,
                "on_timeout": {"action": "escalate", "approvers": {"type": "role", "value": "ceo"},
                               "timeout_hours": 24, "then": "fail"}}},
            {"type": "approval", "name": "Manager Approval",
             "config": {"approvers": {"type": "role", "value": "finance_manager"}, "timeout_hours": 24}},
            {"type": "action", "name": "Execute Payment",
             "config": {"action": "execute_transfer", "params": {"transfer_id": "{{trigger.id}}"}}},
            {"type": "notification", "name": "Tell Finance", "config": {
                "channel": "email", "to": ["finance@example.com", "audit@example.com"],
                "subject": "Paid {{trigger.id}}"}},
        ],
    }
    # the raw JSON view is the same document as the forms
    await page.get_by_role("button", name="Show JSON").click()
    raw = json.loads(await page.get_by_label("Template JSON").input_value())
    assert raw == expected
    await page.get_by_role("button", name="Save template").click()
    await expect(page).to_have_url(re.compile(r"/templates/wft_[0-9a-f]+/1$"))
    template_id = page.url.rsplit("/", 2)[-2]
    _, saved = await world.call("GET", f"/v1/workflows/templates/{template_id}", tenant, expect=200)
    assert saved["document"] == expected


async def test_json_view_edits_show_in_the_forms(dashboard, world):
    """The other direction: a header typed in the raw JSON view appears as a form row."""
    tenant = await world.new_tenant()
    page = dashboard.page
    await dashboard.sign_in(tenant, "admin")
    await dashboard.open("/templates/new")
    await page.get_by_label("Name", exact=True).fill("Lookup")
    await add_step(page, "external", "Lookup")
    await page.get_by_role("button", name="Show JSON").click()
    box = page.get_by_label("Template JSON")
    doc = json.loads(await box.input_value())
    doc["steps"][0]["config"]["headers"] = {"X-Trace": "{{instance.id}}"}
    await box.fill(json.dumps(doc))
    await box.blur()
    await expect(page.get_by_label("Headers name 1")).to_have_value("X-Trace")
    await expect(page.get_by_label("Headers value 1")).to_have_value("{{instance.id}}")
