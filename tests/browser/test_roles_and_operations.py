"""What a user sees follows roles and tenant, and the instance page's actions change the instance."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from core.commands import RecordPaymentResult
from schemas import topics
from tests.browser.conftest import shot
from tests.integration.gateway.test_api import manual_procurement

pytestmark = pytest.mark.asyncio(loop_scope="session")
I = "/v1/workflows/instances"  # noqa: E741


async def waiting_for_cfo(world, tenant) -> str:
    _, template = await world.call("POST", "/v1/workflows/templates", tenant, json=manual_procurement(), expect=201)
    _, started = await world.call("POST", f"{I}?wait=true", tenant, "requester", json={
        "template_id": template["id"], "trigger_data": {"id": "tr_1", "amount": 5000, "currency": "USD"}},
        expect=201)
    await world.wait_instance(tenant, started["id"], lambda d: d["blocking"].get("waiting_for") == "approval")
    return started["id"]


async def test_viewer_sees_no_decision_and_another_tenant_sees_no_instance(dashboard, world):
    tenant = await world.new_tenant()
    instance_id = await waiting_for_cfo(world, tenant)
    page = dashboard.page

    await dashboard.sign_in(tenant, "cfo")  # the approver sees it with its buttons ...
    row = page.get_by_test_id("pending-row").filter(has_text="CFO Approval")
    await expect(row.get_by_role("button", name="Approve")).to_be_visible()
    await expect(row).to_contain_text("tr_1")
    await shot(page, "approvals_as_cfo")
    await dashboard.sign_out()

    await dashboard.sign_in(tenant, "viewer")  # ... a viewer neither there nor on the instance page
    await expect(page.get_by_test_id("readonly-note")).to_contain_text("may not approve or reject")
    await expect(page.get_by_role("button", name="Approve")).to_have_count(0)
    await dashboard.open(f"/instances/{instance_id}")
    await expect(page.get_by_role("heading", level=1)).to_contain_text("ACTIVE")
    await expect(page.get_by_role("region", name="Actions")).to_contain_text("No action is open to you now")
    await expect(page.get_by_role("button", name="Approve")).to_have_count(0)
    await dashboard.sign_out()

    other = await world.new_tenant()
    await dashboard.sign_in(other, "admin")
    await dashboard.open(f"/instances/{instance_id}")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Instance not found")
    await dashboard.tab("Active workflows")
    await expect(page.get_by_test_id("instance-row")).to_have_count(0)


async def test_an_approver_escalates_from_the_instance_page(dashboard, world):
    tenant = await world.new_tenant()
    document = manual_procurement()
    document["steps"][1]["config"]["escalate_to"] = {"type": "role", "value": "ceo"}
    _, template = await world.call("POST", "/v1/workflows/templates", tenant, json=document, expect=201)
    _, started = await world.call("POST", f"{I}?wait=true", tenant, "requester", json={
        "template_id": template["id"], "trigger_data": {"id": "tr_1", "amount": 5000}}, expect=201)
    instance_id = started["id"]
    await world.wait_instance(tenant, instance_id, lambda d: d["blocking"].get("waiting_for") == "approval")
    page = dashboard.page
    await dashboard.sign_in(tenant, "cfo")
    await dashboard.open(f"/instances/{instance_id}")
    await page.get_by_role("region", name="Actions").get_by_role("button", name="Escalate").click()
    form = page.get_by_role("form", name="Confirm escalate")
    await form.get_by_label("Reason").fill("above my mandate")
    await form.get_by_role("button", name="Confirm escalate").click()
    await expect(page.get_by_test_id("blocking")).to_contain_text("role ceo")
    _, detail = await world.call("GET", f"{I}/{instance_id}", tenant, expect=200)
    assert detail["blocking"]["approvers"] == {"type": "role", "value": "ceo"}


async def confirm(page, action: str, reason: str | None = None) -> None:
    await page.get_by_role("region", name="Actions").get_by_role("button", name=action, exact=True).click()
    form = page.get_by_role("form", name=f"Confirm {action.lower()}")
    if reason is not None:
        await form.get_by_label("Reason").fill(reason)
    await form.get_by_role("button", name=f"Confirm {action.lower()}").click()


async def test_pause_resume_and_cancel_from_the_instance_page(dashboard, world):
    tenant = await world.new_tenant()
    instance_id = await waiting_for_cfo(world, tenant)
    page = dashboard.page
    await dashboard.sign_in(tenant, "operator")
    await dashboard.open(f"/instances/{instance_id}")
    heading = page.get_by_role("heading", level=1)
    await expect(heading).to_contain_text("ACTIVE")

    await confirm(page, "Pause", "vendor on hold")
    await expect(heading).to_contain_text("PAUSED")
    assert (await world.call("GET", f"{I}/{instance_id}", tenant, expect=200))[1]["status"] == "PAUSED"
    await confirm(page, "Resume")
    await expect(heading).to_contain_text("ACTIVE")
    assert (await world.call("GET", f"{I}/{instance_id}", tenant, expect=200))[1]["status"] == "ACTIVE"
    await confirm(page, "Cancel", "duplicate request")
    await expect(heading).to_contain_text("CANCELLED")
    _, detail = await world.call("GET", f"{I}/{instance_id}", tenant, expect=200)
    assert detail["status"] == "CANCELLED"
    trail = page.get_by_role("table", name="Audit trail")
    await expect(trail.get_by_test_id("audit-row").filter(has_text="vendor on hold")).to_have_count(1)
    await expect(trail.get_by_test_id("audit-row").filter(has_text="duplicate request")).to_have_count(1)


async def test_retry_a_failed_step_from_the_instance_page(dashboard, world):
    tenant = await world.new_tenant()
    document = {"name": "Pay", "trigger_type": "manual", "steps": [
        {"type": "action", "name": "Execute Payment", "config": {"action": "execute_transfer",
                                                                 "params": {"transfer_id": "{{trigger.id}}"}}}]}
    _, template = await world.call("POST", "/v1/workflows/templates", tenant, json=document, expect=201)
    _, started = await world.call("POST", f"{I}?wait=true", tenant, "requester", json={
        "template_id": template["id"], "trigger_data": {"id": "tr_9"}}, expect=201)
    instance_id = started["id"]
    await world.play_action_handler(instance_id, 1, error="insufficient funds")
    await world.wait_instance(tenant, instance_id, lambda d: d["status"] == "FAILED")

    page = dashboard.page
    await dashboard.sign_in(tenant, "operator")
    await dashboard.open(f"/instances/{instance_id}")
    heading = page.get_by_role("heading", level=1)
    await expect(heading).to_contain_text("FAILED")
    await expect(page.get_by_test_id("blocking")).to_contain_text("insufficient funds")
    await confirm(page, "Retry")
    await expect(heading).to_contain_text("ACTIVE")
    # the retry is a new visit of the step (what failed paid nothing): a new payment order, docs/adr/0023
    await world.engine.wait_until(lambda: any(o.idempotency_key == f"{instance_id}:1:v2"
                                              for o in world.engine.payments.get(instance_id, [])),
                                  message="the retried attempt is ordered")
    await world.engine.send_command(RecordPaymentResult(
        command_id=f"payment:{instance_id}:1:v2", instance_id=instance_id, step=1,
        operation_key=f"{instance_id}:1:v2", status="succeeded", output={"status": "executed"}),
        topic=topics.WORKFLOW_STEP_RESULTS)
    await expect(heading).to_contain_text("COMPLETED", timeout=20_000)


async def test_pipelines_show_failures_to_retry_and_analytics_draws_charts(dashboard, world):
    tenant = await world.new_tenant()
    document = {"name": "Payout", "trigger_type": "manual", "steps": [
        {"type": "action", "name": "Execute Payment", "config": {"action": "execute_transfer",
                                                                 "params": {"transfer_id": "{{trigger.id}}"}}}]}
    _, template = await world.call("POST", "/v1/workflows/templates", tenant, json=document, expect=201)
    ids = []
    for n in range(2):
        _, started = await world.call("POST", f"{I}?wait=true", tenant, "requester", json={
            "template_id": template["id"], "trigger_data": {"id": f"tr_{n}"}}, expect=201)
        ids.append(started["id"])
    await world.play_action_handler(ids[0], 1)
    await world.play_action_handler(ids[1], 1, error="account frozen")
    await world.wait_instance(tenant, ids[1], lambda d: d["status"] == "FAILED")

    page = dashboard.page
    await dashboard.sign_in(tenant, "operator")
    await dashboard.tab("Pipelines")
    steps = page.get_by_role("table", name="Steps across instances")
    await expect(steps.get_by_test_id("pipeline-step")).to_contain_text("Execute Payment")
    await expect(steps.get_by_test_id("pipeline-step")).to_contain_text("2")  # executions
    failure = page.get_by_test_id("failure-row").filter(has_text="account frozen")
    await expect(failure).to_contain_text(ids[1])
    await shot(page, "pipelines_with_a_failure")
    await failure.get_by_role("button", name="Retry step 1").click()
    await failure.get_by_role("button", name="Confirm retry").click()
    await world.wait_instance(tenant, ids[1], lambda d: d["status"] == "ACTIVE")
    await expect(failure.get_by_role("button", name="Retry step 1")).to_have_count(0)

    await dashboard.tab("Analytics")
    await expect(page.get_by_role("region", name="Throughput")).to_be_visible()
    await expect(page.locator(".card").filter(has_text="Instances")).to_contain_text("2")
