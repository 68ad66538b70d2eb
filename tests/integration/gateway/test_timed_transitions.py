"""A time-based state-machine transition on the real broker and database (issue 13 residual): the instance
leaves its state when the time comes, with no command sent to it; exactly once, in the audit trail; and a
state left before its time never takes it."""

from __future__ import annotations

import asyncio

import pytest

from tests.integration.gateway.test_api import I, create

pytestmark = pytest.mark.asyncio(loop_scope="session")

REVIEW = {"name": "Review with a deadline", "trigger_type": "manual",
          "states": [{"name": "under_review"}, {"name": "escalated"},
                     {"name": "done", "terminal": "COMPLETED"}],
          "transitions": [{"from": "under_review", "to": "done", "roles": ["operator"]},
                          {"from": "under_review", "to": "escalated", "after_seconds": 2},
                          {"from": "escalated", "to": "done", "roles": ["operator"]}]}


async def _start(world, tenant) -> str:
    template = await create(world, tenant, REVIEW)
    # started by the requester: the operator who takes the role-restricted transition must not have started
    # it (separation of duties, core/approvers.py `transition_refusal`)
    _, started = await world.call("POST", f"{I}?wait=true", tenant, "requester",
                                  json={"template_id": template["id"]}, expect=201)
    return started["id"]


async def test_a_time_based_transition_fires_by_itself_once(api_world, tenant):
    iid = await _start(api_world, tenant)
    _, view = await api_world.call("GET", f"{I}/{iid}/transitions", tenant, "operator", expect=200)
    timed = next(t for t in view["transitions"] if t["to"] == "escalated")
    assert timed["due_at"] and "time-based" in timed["why_not"]
    detail = await api_world.wait_instance(tenant, iid, lambda b: b.get("machine_state") == "escalated", timeout=60)
    await asyncio.sleep(1)  # the sweep re-sends a fired timer after a while; that must change nothing
    detail = await api_world.wait_instance(tenant, iid, lambda b: b.get("machine_state") == "escalated")
    events = [(t["event_type"], t["actor"]["id"]) for t in detail["timeline"]
              if t["event_type"] in ("TransitionDue", "TransitionTaken")]
    assert events == [("TransitionTaken", "flowline"), ("TransitionDue", "flowline"),
                      ("TransitionTaken", "flowline")]
    taken = [t for t in detail["timeline"] if t["event_type"] == "TransitionTaken"][-1]
    assert "after 2 seconds in under_review" in (taken.get("reasoning") or "")


async def test_leaving_the_state_in_time_cancels_it(api_world, tenant):
    iid = await _start(api_world, tenant)
    await api_world.call("POST", f"{I}/{iid}/transitions?wait=true", tenant, "operator",
                         json={"target_state": "done", "reason": "reviewed in time"}, expect=(200, 202))
    detail = await api_world.wait_instance(tenant, iid, lambda b: b["status"] == "COMPLETED")
    await asyncio.sleep(3)  # past the time it would have fallen due
    _, detail = await api_world.call("GET", f"{I}/{iid}", tenant, "operator", expect=200)
    assert detail["status"] == "COMPLETED" and detail.get("machine_state") == "done"
    assert not [t for t in detail["timeline"] if t["event_type"] == "TransitionDue"]
