"""The procurement example driven through the SDK: a transfer event starts it, the PRD's ApprovalManager
shows the CFO's pending approval, refuses the manager on the CFO's step (the engine's reason as a typed
Conflict), records the CFO's and the manager's approvals, and the instance completes with its audit
trail."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from flowline.client import AsyncClient, Conflict
from flowline.prd import ApprovalManager
from schemas.records import TransferEvent
from tests.integration.sdk.conftest import CFO, MANAGER, VIEWER

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def instance_for_event(client: AsyncClient, template_id: str, event_id: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        async for instance in client.iter_instances(template_id=template_id):
            if instance.source.endswith(f":{event_id}"):
                return instance.id
        await asyncio.sleep(0.2)
    raise AssertionError(f"no instance of {template_id} for event {event_id}")


async def test_sdk_drives_procurement_from_a_transfer_event_to_completion(sdk):
    event_id = f"evt_{uuid.uuid4().hex[:10]}"
    await sdk.world.engine.send_transfer(TransferEvent(
        event_id=event_id, transfer_id=f"tr_{event_id}", event_type="transfer.created", tenant_id="acme",
        amount_minor=250_000, currency="USD", currency_exponent=2, source_account="acc_src",
        destination_account="acc_vendor", metadata={"type": "procurement"}, occurred_at=int(time.time() * 1000)))
    async with sdk.client(VIEWER) as viewer:
        approvals = ApprovalManager(viewer)
        instance_id = await instance_for_event(viewer, "wf_procurement_approval", event_id)
        await viewer.wait_for_instance(instance_id, lambda i: i.current_step == 2 and
                                       i.blocking.get("waiting_for") == "approval")

        pending = await approvals.get_pending_approvals(CFO)
        request = next(r for r in pending if r.workflow_id == instance_id)
        assert (request.request_id, request.step_name, request.level) == (f"{instance_id}:2", "CFO Approval", "SINGLE")
        assert request.approvers == {"type": "role", "value": "cfo"}
        assert not await approvals.check_quorum(request.request_id)
        assert instance_id not in [r.workflow_id for r in await approvals.get_pending_approvals(MANAGER)]

        with pytest.raises(Conflict) as refused:
            await approvals.approve(request.request_id, MANAGER, "I am not the CFO")
        assert "not among the approvers" in refused.value.detail

        key = f"cfo-{uuid.uuid4().hex}"
        decision = await approvals.approve(request.request_id, CFO, "within Q3 budget", idempotency_key=key)
        assert (decision.action, decision.approver, decision.reason) == ("approve", "alice-cfo", "within Q3 budget")
        assert decision.decision_id and decision.timestamp is not None
        retried = await approvals.approve(request.request_id, CFO, "within Q3 budget", idempotency_key=key)
        assert retried.decision_id == decision.decision_id  # the stored answer, not a duplicate's rejection
        assert await approvals.check_quorum(request.request_id)

        await viewer.wait_for_instance(instance_id, lambda i: i.current_step == 3 and
                                       i.blocking.get("waiting_for") == "approval")
        [manager_request] = [r for r in await approvals.get_pending_approvals(MANAGER) if r.workflow_id == instance_id]
        await approvals.approve(manager_request.request_id, MANAGER, "vendor verified")
        await sdk.world.play_action_handler(instance_id, 4, {"status": "executed", "transfer_id": f"tr_{event_id}"})
        done = await viewer.wait_for_instance(instance_id)

    assert done.status == "COMPLETED" and done.source.endswith(event_id)
    assert done.trigger["amount"] == 2500
    assert [s.status for s in done.steps] == ["COMPLETED", "APPROVED", "APPROVED", "COMPLETED"]
    trail = [(t.event_type, t.step, t.actor.id, t.actor.kind, t.reasoning) for t in done.timeline]
    assert ("DecisionRecorded", 2, "alice-cfo", "human", "within Q3 budget") in trail
    assert ("DecisionRecorded", 3, "bob-manager", "human", "vendor verified") in trail
    assert any(t[0] == "CommandRejected" and "bob-manager is not among the approvers" in t[4] for t in trail)
    assert trail[0][0] == "InstanceStarted" and trail[-1][0] == "InstanceCompleted"
    assert [t.seq for t in done.timeline] == list(range(1, len(trail) + 1))
