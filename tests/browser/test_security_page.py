"""The Security page: an admin reads the tenant's security log (its principals' refused commands against
other tenants' instances) and each agent's access log, both of which were API-only; others see no tab."""

from __future__ import annotations

import asyncio

import pytest
from playwright.async_api import expect

from core import events as ev
from tests.browser.conftest import shot
from tests.integration.gateway.test_api import manual_procurement

pytestmark = pytest.mark.asyncio(loop_scope="session")
I = "/v1/workflows/instances"  # noqa: E741 (the name the gateway tests use)


async def test_an_admin_reads_the_security_log_and_an_agents_access_log(dashboard, world):
    victim = await world.new_tenant()
    attacker = await world.new_tenant()
    _, template = await world.call("POST", "/v1/workflows/templates", victim, json=manual_procurement(), expect=201)
    _, started = await world.call("POST", I, victim, "requester", expect=202,
                                  json={"template_id": template["id"], "trigger_data": {"amount": 5000}})
    iid = started["instance_id"]
    await world.engine.wait_for_event(iid, ev.ApprovalRequested, step=2)
    status, _ = await world.call("POST", f"{I}/{iid}/steps/2/approve", attacker, "cfo",
                                 json={"reasoning": "not my tenant"})
    assert status == 404
    rejection = await world.engine.wait_for_event(iid, ev.CommandRejected)
    for _ in range(300):  # the projector records the refusal in the attacker's tenant's log
        if await world.gateway.pool.fetchval("SELECT 1 FROM security_log WHERE command_id = $1", rejection.command_id):
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the projector never recorded the refusal")
    await world.call("GET", f"{I}?limit=5", attacker, "agent", expect=200,
                     headers={"X-Flowline-Conversation-Id": "conv-security-page"})

    page = dashboard.page
    await dashboard.sign_in(attacker, "admin")
    await dashboard.tab("Security")
    entries = page.get_by_test_id("security-entry")
    await expect(entries).to_have_count(1)
    await expect(entries.first).to_contain_text(attacker.ids["cfo"])
    await expect(entries.first).to_contain_text(iid)
    await expect(entries.first).to_contain_text("RecordDecision")
    calls = page.get_by_test_id("access-entry")
    await expect(calls.filter(has_text="conv-security-page")).to_have_count(1)
    await expect(calls.filter(has_text="conv-security-page")).to_contain_text("GET")
    await shot(page, "security_page")
    await dashboard.sign_out()

    await dashboard.sign_in(victim, "admin")  # the victim's log has nothing of it
    await dashboard.tab("Security")
    await expect(page.get_by_text("Nothing recorded")).to_be_visible()
    await expect(page.get_by_test_id("security-entry")).to_have_count(0)
    await dashboard.sign_out()

    await dashboard.sign_in(attacker, "viewer")  # no tab for a viewer, and the page says why
    await expect(page.get_by_role("navigation", name="Main").get_by_role("link", name="Security")).to_have_count(0)
    await dashboard.open("/security")
    await expect(page.get_by_text("may not read the security log")).to_be_visible()
    await expect(page.get_by_test_id("security-entry")).to_have_count(0)
