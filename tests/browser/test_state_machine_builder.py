"""The builder opens state-machine templates (docs/state-machines.md): states as nodes and transitions as
labelled edges in the graph, every state and transition edited through forms, the server's messages at
the field their pointer names, saved as a new version; each state-machine template of the docs and tests
opens and saves unchanged."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import expect

from core.builtin import STATE_MACHINE_NAMES, builtin_template
from tests.browser.conftest import shot

pytestmark = pytest.mark.asyncio(loop_scope="session")

# the SDK's state machine (docs/state-machines.md, tests/integration/sdk/test_sdk_state_machine.py)
SDK_REVIEW = {
    "name": "Compliance review", "trigger_type": "manual",
    "states": [{"name": "submitted"}, {"name": "under_review"}, {"name": "changes_requested"},
               {"name": "approved", "terminal": "COMPLETED"}, {"name": "rejected", "terminal": "FAILED"}],
    "transitions": [
        {"from": "submitted", "to": "under_review", "automatic": True},
        {"from": "under_review", "to": "changes_requested", "roles": ["operator"]},
        {"from": "changes_requested", "to": "under_review"},
        {"from": "under_review", "to": "approved", "roles": ["operator"], "requires_approval": {
            "approvers": [{"type": "role", "value": "cfo"}, {"type": "role", "value": "finance_manager"}],
            "level": "DUAL"}},
        {"from": "under_review", "to": "rejected", "roles": ["operator"]},
    ],
}
MACHINES = {name: builtin_template(name) for name in STATE_MACHINE_NAMES} | {"sdk_review": SDK_REVIEW}


async def open_template(dashboard, world, document: dict) -> tuple[object, dict]:
    tenant = await world.new_tenant()
    _, created = await world.call("POST", "/v1/workflows/templates", tenant, json=document, expect=201)
    await dashboard.sign_in(tenant, "admin")
    await dashboard.open(f"/templates/{created['id']}/1")
    await expect(dashboard.page.get_by_role("heading", level=1)).to_contain_text(document["name"])
    return tenant, created


@pytest.mark.parametrize("name", list(MACHINES))
async def test_state_machine_round_trips_through_the_builder(dashboard, world, name):
    original = MACHINES[name]
    tenant, created = await open_template(dashboard, world, original)
    page = dashboard.page
    await expect(page.get_by_test_id("validity")).to_have_text("valid")
    if name == "model_deployment_sm":  # a request body (any JSON) shows as rows, not as a JSON box
        await expect(page.get_by_label("Body name 1")).to_have_value("model")
        await expect(page.get_by_label("Body value 1")).to_have_value("{{trigger.model}}")
    graph = page.get_by_role("figure", name="State machine graph")
    for state in original["states"]:
        await expect(graph.get_by_label(re.compile(rf"^State {state['name']}\b"))).to_be_attached()
    # every state's and transition's form renders its values
    states = page.get_by_role("region", name="States")
    for state in original["states"]:
        await states.get_by_role("button", name=re.compile(rf"^State {state['name']}\b")).click()
        await expect(page.get_by_label("State name")).to_have_value(state["name"])
    transitions = page.get_by_role("region", name="Transitions")
    for i, t in enumerate(original["transitions"]):
        await transitions.get_by_role("listitem").nth(i).get_by_role("button").first.click()
        await expect(page.get_by_label("From state", exact=True)).to_have_value(t["from"])
        await expect(page.get_by_label("To state", exact=True)).to_have_value(t["to"])
    await page.get_by_role("button", name="Save as new version").click()
    await expect(page).to_have_url(f"{dashboard.base}/templates/{created['id']}/2")
    _, saved = await world.call("GET", f"/v1/workflows/templates/{created['id']}?version=2", tenant, expect=200)
    assert saved["document"] == original


async def test_edit_states_and_transitions_through_forms(dashboard, world):
    original = builtin_template("compliance_review_sm")
    tenant, created = await open_template(dashboard, world, original)
    page = dashboard.page
    graph = page.get_by_role("figure", name="State machine graph")
    await expect(graph.get_by_label("State approved, ends COMPLETED")).to_be_attached()

    # a guard that does not parse: the server's message lands at the transition's condition field
    transitions = page.get_by_role("region", name="Transitions")
    await transitions.get_by_role("button", name="under_review → approved").click()
    await page.get_by_label("Condition (guard: available only while it holds)").fill("trigger.amount <<< 5")
    condition = page.locator('[data-pointer="/transitions/3/condition"]')
    await expect(condition.get_by_role("alert")).not_to_have_count(0)
    await expect(page.get_by_test_id("validity")).to_have_text(re.compile(r"\d+ problem"))
    await shot(page, "state_machine_validation_error_at_the_field")
    await page.get_by_label("Condition (guard: available only while it holds)").fill("trigger.amount < 50000")
    await expect(condition.get_by_role("alert")).to_have_count(0)
    # allowed roles: a row added, keyboard only
    await page.get_by_role("button", name="Add allowed roles item").focus()
    await page.keyboard.press("Enter")
    await page.get_by_label("Allowed roles 2").fill("auditor")
    # the approval's quorum level through its form
    await page.get_by_label("Level").select_option("COMMITTEE")
    await page.get_by_label("Quorum (COMMITTEE)").fill("2")
    await expect(graph.get_by_label(re.compile(r"Transition under_review to approved: .*if trigger\.amount < 50000"))
                 ).to_be_attached()

    # a state renamed: its transitions follow; a new state gets an entry action drawn from its schema
    states = page.get_by_role("region", name="States")
    await states.get_by_role("button", name=re.compile(r"^State changes_requested")).click()
    await page.get_by_label("State name").fill("needs_changes")
    await page.get_by_role("button", name="Add state").click()
    await page.get_by_label("State name").fill("escalated")
    await page.get_by_label("Terminal (the instance ends here with this status)").select_option("CANCELLED")
    await page.get_by_label("New entry action type").select_option("notification")
    await page.get_by_role("button", name="Add entry action").click()
    action = page.get_by_role("group", name="Entry action 1: notification")
    await action.get_by_label("Entry action 1 name").fill("Tell The Desk")
    await action.get_by_label("Channel", exact=True).select_option("email")
    await action.get_by_label("To (address or list) shape").select_option(label="a list")
    await action.get_by_role("button", name="Add to (address or list) item").click()
    await action.get_by_label("To (address or list) 1").fill("desk@example.com")
    await action.get_by_label("Subject").fill("Escalated")
    await action.get_by_label("Webhook URL").fill("x")
    await action.get_by_label("Webhook URL").fill("")
    await page.get_by_role("button", name="Add transition").click()
    await page.get_by_label("From state", exact=True).select_option("under_review")
    await page.get_by_label("To state", exact=True).select_option("escalated")
    await expect(graph.get_by_label("State escalated, ends CANCELLED")).to_be_attached()
    await expect(page.get_by_test_id("validity")).to_have_text("valid")
    await graph.scroll_into_view_if_needed()
    await shot(page, "state_machine_edited_in_the_builder")
    await page.get_by_role("button", name="Save as new version").click()
    await expect(page).to_have_url(f"{dashboard.base}/templates/{created['id']}/2")

    _, saved = await world.call("GET", f"/v1/workflows/templates/{created['id']}?version=2", tenant, expect=200)
    doc = saved["document"]
    assert [s["name"] for s in doc["states"]] == ["submitted", "under_review", "needs_changes", "approved",
                                                   "rejected", "escalated"]
    assert doc["states"][5] == {"name": "escalated", "terminal": "CANCELLED", "entry_actions": [
        {"type": "notification", "name": "Tell The Desk",
         "config": {"channel": "email", "to": ["desk@example.com"], "subject": "Escalated"}}]}
    assert doc["transitions"][1] == {**original["transitions"][1], "to": "needs_changes"}
    assert doc["transitions"][2] == {**original["transitions"][2], "from": "needs_changes"}
    approve = doc["transitions"][3]
    assert approve["condition"] == "trigger.amount < 50000"
    assert approve["roles"] == ["compliance_officer", "auditor"]
    assert approve["requires_approval"] == {**original["transitions"][3]["requires_approval"],
                                            "level": "COMMITTEE", "quorum": 2}
    # the built-in's time-based transition out of the renamed state follows it, its time kept
    assert doc["transitions"][5] == {**original["transitions"][5], "from": "needs_changes"}
    assert doc["transitions"][len(original["transitions"])] == {"from": "under_review", "to": "escalated"}


async def test_a_new_state_machine_from_nothing(dashboard, world):
    tenant = await world.new_tenant()
    page = dashboard.page
    await dashboard.sign_in(tenant, "admin")
    await dashboard.open("/templates/new")
    await page.get_by_label("Name", exact=True).fill("Two states")
    await page.get_by_label("Template shape").select_option("machine")
    await page.get_by_role("button", name="Add state").click()
    await page.get_by_label("State name").fill("open")
    await page.get_by_role("button", name="Add state").click()
    await page.get_by_label("State name").fill("closed")
    await page.get_by_label("Terminal (the instance ends here with this status)").select_option("COMPLETED")
    # no transition yet: "closed" cannot be reached, said at the state
    states = page.get_by_role("region", name="States")
    await expect(states.get_by_role("button", name=re.compile(r"^State closed")).get_by_label(
        re.compile(r"\d+ problems"))).to_be_visible()
    await page.get_by_role("button", name="Add transition").click()
    await page.get_by_label("From state", exact=True).select_option("open")
    await page.get_by_label("To state", exact=True).select_option("closed")
    await page.get_by_label(re.compile(r"^Automatic")).check()
    await expect(page.get_by_test_id("validity")).to_have_text("valid")
    await page.get_by_role("button", name="Save template").click()
    await expect(page).to_have_url(re.compile(r"/templates/wft_[0-9a-f]+/1$"))
    template_id = page.url.rsplit("/", 2)[-2]
    _, saved = await world.call("GET", f"/v1/workflows/templates/{template_id}", tenant, expect=200)
    assert saved["document"] == {"name": "Two states", "trigger_type": "manual",
                                 "states": [{"name": "open"}, {"name": "closed", "terminal": "COMPLETED"}],
                                 "transitions": [{"from": "open", "to": "closed", "automatic": True}]}


async def test_a_state_machine_instance_page_draws_its_states(dashboard, world):
    tenant = await world.new_tenant()
    _, created = await world.call("POST", "/v1/workflows/templates", tenant, json=SDK_REVIEW, expect=201)
    _, started = await world.call("POST", "/v1/workflows/instances?wait=true", tenant, "requester", json={
        "template_id": created["id"], "trigger_data": {"id": "tr_sm"}}, expect=201)
    await world.wait_instance(tenant, started["id"], lambda d: d.get("machine_state") == "under_review")
    await dashboard.sign_in(tenant, "operator")
    await dashboard.open(f"/instances/{started['id']}")
    graph = dashboard.page.get_by_role("figure", name="Instance path")
    await expect(graph.get_by_label("State under_review (current)")).to_be_attached()
    await expect(graph.get_by_label("State approved, ends COMPLETED")).to_be_attached()
    await expect(graph.get_by_label(re.compile(r"^Transition under_review to approved: .*needs approval"))
                 ).to_be_attached()


async def test_a_transitions_time_is_edited_in_the_builder(dashboard, world):
    """A time-based transition's delay or deadline (after_seconds/minutes/hours, at) is a form, not JSON: the
    built-in's week-long timeout becomes 36 hours, a requested transition gets a deadline from the trigger, a
    bad delay shows the server's message at the field."""
    original = builtin_template("compliance_review_sm")
    tenant, created = await open_template(dashboard, world, original)
    page = dashboard.page
    graph = page.get_by_role("figure", name="State machine graph")
    transitions = page.get_by_role("region", name="Transitions")
    time = page.get_by_role("group", name="Time")

    await transitions.get_by_role("button", name="changes_requested → rejected").click()
    await expect(time.get_by_label("Takes effect")).to_have_value("after")
    await expect(time.get_by_label("Delay")).to_have_value("168")
    await expect(time.get_by_label("Unit")).to_have_value("hours")
    await time.get_by_label("Delay").fill("0")  # the server's rule: a positive number
    await expect(page.locator('[data-pointer="/transitions/5/time"]').get_by_role("alert")).not_to_have_count(0)
    await time.get_by_label("Delay").fill("36")
    await expect(page.get_by_test_id("validity")).to_have_text("valid")
    await expect(graph.get_by_label(re.compile(r"Transition changes_requested to rejected: automatic after 36 hours"))
                 ).to_be_attached()

    await transitions.get_by_role("button", name="under_review → rejected").click()
    await time.get_by_label("Takes effect").select_option("at")
    await time.get_by_label("Deadline").fill("{{trigger.review_by}}")
    await expect(page.get_by_test_id("validity")).to_have_text("valid")
    await shot(page, "state_machine_transition_time")
    await page.get_by_role("button", name="Save as new version").click()
    await expect(page).to_have_url(f"{dashboard.base}/templates/{created['id']}/2")

    _, saved = await world.call("GET", f"/v1/workflows/templates/{created['id']}?version=2", tenant, expect=200)
    doc = saved["document"]
    assert doc["transitions"][5] == {**{k: v for k, v in original["transitions"][5].items() if k != "after_hours"},
                                     "after_hours": 36}
    assert doc["transitions"][4] == {**original["transitions"][4], "at": "{{trigger.review_by}}"}
    assert doc["transitions"][:4] == original["transitions"][:4]
