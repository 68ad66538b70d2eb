"""A state-machine compliance review on the real stack, driven through the SDK's `StateMachine`: the review
takes the "request changes" loop twice (an operator asks, the agent resubmits), then the transition to
approved opens its approval step, which needs two approvers (dual quorum); the audit trail records every
transition with who, human or agent, and why; GET .../transitions says why a transition is not available."""

from __future__ import annotations

import uuid

import pytest

from flowline.client import Conflict
from flowline.prd import StateMachine
from tests.integration.sdk.conftest import ADMIN, CFO, MANAGER, OPERATOR, TOKENS

pytestmark = pytest.mark.asyncio(loop_scope="session")
AGENT = TOKENS["agent_456"]


def review(client, name: str) -> StateMachine:
    machine = StateMachine(client, name, description="compliance review with a request-changes loop")
    machine.add_state("submitted").add_state("under_review").add_state("changes_requested")
    machine.add_state("approved", terminal="COMPLETED").add_state("rejected", terminal="FAILED")
    machine.add_transition("submitted", "under_review", automatic=True)
    machine.add_transition("under_review", "changes_requested", roles=["operator"])
    machine.add_transition("changes_requested", "under_review")
    machine.add_transition("under_review", "approved", roles=["operator"], requires_approval={
        "approvers": [{"type": "role", "value": "cfo"}, {"type": "role", "value": "finance_manager"}],
        "level": "DUAL"})
    machine.add_transition("under_review", "rejected", roles=["operator"])
    return machine


async def test_compliance_review_loops_twice_then_dual_approval(sdk):
    async with sdk.client(ADMIN) as admin:
        machine = review(admin, f"Compliance SM {uuid.uuid4().hex[:8]}")
        assert machine.validate_workflow() == []
        assert machine.visualize()["mermaid"].startswith("stateDiagram-v2")
        await machine.register()
        await sdk.world.engine_knows(machine.template_id)
        instance_id = await machine.start({"id": "tr_sm", "amount": 900})
        await admin.wait_for_instance(instance_id, lambda i: i.raw.get("machine_state") == "under_review")

        for round_ in range(2):
            await machine.transition(instance_id, "changes_requested", f"missing invoice ({round_})", who=OPERATOR)
            view = await machine.get_available_transitions(instance_id, who=AGENT)
            assert view.state == "changes_requested" and view.available == ["under_review"]
            await machine.transition(instance_id, "under_review", "invoice attached", who=AGENT)

        refused = await machine.get_available_transitions(instance_id, who=AGENT)
        assert {t.to: t.why_not for t in refused.transitions}["approved"] == "role missing: needs one of operator"
        with pytest.raises(Conflict) as no_role:
            await machine.transition(instance_id, "approved", "I approve myself", who=AGENT)
        assert "role missing" in no_role.value.detail

        await machine.transition(instance_id, "approved", "all documents in order", who=OPERATOR)
        pending = await admin.wait_for_instance(instance_id, lambda i: i.raw.get("pending_transition") == "approved"
                                                and i.blocking.get("waiting_for") == "approval")
        step = pending.current_step
        waiting = await machine.get_available_transitions(instance_id, who=OPERATOR)
        assert all("approval pending" in t.why_not for t in waiting.transitions)
        async with sdk.client(CFO) as cfo:
            await cfo.approve(instance_id, step, "compliant", wait=True)
        still = await admin.get_instance(instance_id)
        assert still.status == "ACTIVE"  # dual: one approval is not enough
        async with sdk.client(MANAGER) as manager:
            await manager.approve(instance_id, step, "compliant too", wait=True)
        done = await admin.wait_for_instance(instance_id)

    assert done.status == "COMPLETED" and done.raw["machine_state"] == "approved"
    moves = [(t.details.get("from_state"), t.details.get("to_state"), t.actor.id, t.actor.kind, t.reasoning)
             for t in done.timeline if t.event_type == "TransitionTaken"]
    assert [(m[0], m[1]) for m in moves] == [
        ("", "submitted"), ("submitted", "under_review"),
        ("under_review", "changes_requested"), ("changes_requested", "under_review"),
        ("under_review", "changes_requested"), ("changes_requested", "under_review"),
        ("under_review", "approved")]
    assert moves[2][2:] == ("acme-operator", "human", "missing invoice (0)")
    assert moves[3][2:] == ("agent_456", "agent", "invoice attached")
    assert moves[-1][2:] == ("acme-operator", "human", "all documents in order")
    approvals = [t for t in done.timeline if t.event_type == "DecisionRecorded"]
    assert {a.actor.id for a in approvals} == {"alice-cfo", "bob-manager"}
