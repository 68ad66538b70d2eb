"""Defects found by a new user and a security review (issues 9 and 10), each pinned by a test that failed
before its fix: decisions racing the projector, replayed callbacks, idempotency keys across principals,
pending-approval pages, PostgreSQL outages and hostile request bodies."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from core import events as ev
from tests.integration.gateway.test_api import I, create

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def _resume_later(world, seconds: float) -> None:
    await asyncio.sleep(seconds)
    await world.resume_projector()


# ------------------------------------------------------------------------------- 9.7 decisions vs lag

async def test_a_decision_sent_right_after_approval_requested_is_accepted_not_404(api_world, tenant):
    template = await create(api_world, tenant)
    other = await api_world.new_tenant()
    gw = api_world.gateway
    gw.settings = dataclasses.replace(gw.settings, instance_wait_seconds=20)
    await api_world.pause_projector()
    resumed = None
    try:
        _, started = await api_world.call("POST", I, tenant, "requester", expect=202,
                                          json={"template_id": template["id"], "trigger_data": {"amount": 5000}})
        iid = started["instance_id"]
        # a client following workflow.events sees the request while the read model knows nothing yet
        await api_world.engine.wait_for_event(iid, ev.ApprovalRequested, step=2)
        resumed = asyncio.create_task(_resume_later(api_world, 0.5))
        _, accepted = await api_world.call("POST", f"{I}/{iid}/steps/2/approve", tenant, "cfo",
                                           json={"reasoning": "seen on the event stream"}, expect=202)
        assert accepted["instance_id"] == iid
    finally:
        if resumed is not None:
            await resumed
        else:
            await api_world.resume_projector()
        gw.settings = dataclasses.replace(gw.settings, instance_wait_seconds=3)
    await api_world.engine.wait_for_event(iid, ev.DecisionRecorded, step=2)
    detail = await api_world.wait_instance(tenant, iid, lambda b: b["current_step"] == 3)
    assert [t["actor"]["id"] for t in detail["timeline"] if t["event_type"] == "DecisionRecorded"] == [
        tenant.ids["cfo"]]
    # waiting never loosens the checks: another tenant's approver and an unknown id still get 404
    status, _ = await api_world.call("POST", f"{I}/{iid}/steps/3/approve", other, "manager", json={})
    assert status == 404
    status, _ = await api_world.call("POST", f"{I}/wfi_nope/steps/3/approve", tenant, "manager", json={})
    assert status == 404
