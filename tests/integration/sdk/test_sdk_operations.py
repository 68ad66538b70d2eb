"""The rest of the instance operations through the SDK: pause and resume a pipeline run that waits for an
async external call, complete that call with a signed callback, escalate an approval, cancel, and the
agent-actions list."""

from __future__ import annotations

import uuid

import pytest

from flowline.prd import ApprovalManager, PipelineRunner, PipelineStep
from tests.integration.sdk.conftest import ADMIN, CFO, MANAGER, OPERATOR, REQUESTER

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_a_run_waiting_for_a_callback_is_paused_resumed_and_completed_by_a_signed_callback(sdk):
    run = uuid.uuid4().hex[:8]
    sdk.receiver.on(f"/{run}/reviews", 202, {"review_id": "rv_1"})
    async with sdk.client(ADMIN) as admin:
        runner = PipelineRunner(admin, timeout=30)
        pipeline_id = await runner.create_pipeline(f"Review {run}", [PipelineStep("Submit review", {
            "type": "external", "config": {"url": f"{sdk.receiver.url}/{run}/reviews", "method": "POST",
                                           "mode": "async", "extract_fields": {"risk": "response.body.risk"}}})])
        await sdk.world.engine_knows(pipeline_id)
        started = await runner.execute(pipeline_id, {"id": run}, wait=False)
        await admin.wait_for_instance(started.run_id, lambda i: any(
            t.event_type == "ExternalCallAccepted" for t in i.timeline))

        operator = admin.with_token(OPERATOR)
        await PipelineRunner(operator).pause(started.run_id, "holiday")
        assert (await runner.get_status(started.run_id))["status"] == "PAUSED"
        resumed = await PipelineRunner(operator).resume(started.run_id, wait=False)
        assert resumed.status == "ACTIVE" and resumed.current_step == "Submit review"

        actions = await operator.agent_actions(started.run_id)
        assert actions.instance_id == started.run_id and actions.actor.kind == "human"
        callback = await admin.callback_url(started.run_id, 1)
        assert callback.url.endswith(f"/instances/{started.run_id}/steps/1/complete-external")
        done = await admin.complete_external(started.run_id, 1, "completed", {"risk": 0.12}, token=callback.token,
                                             wait=True)
        assert done.status == "COMPLETED"
        result = await runner.get_status(started.run_id)
    assert result["status"] == "COMPLETED" and result["steps"][0]["status"] == "COMPLETED"


async def test_an_approval_is_escalated_to_the_templates_target_then_the_instance_cancelled(sdk):
    run = uuid.uuid4().hex[:8]
    async with sdk.client(ADMIN) as admin:
        template = await admin.create_template({
            "name": f"Escalating approval {run}", "trigger_type": "manual", "trigger_config": {},
            "steps": [{"type": "approval", "name": "CFO Approval",
                       "config": {"approvers": {"type": "role", "value": "cfo"},
                                  "escalate_to": {"type": "role", "value": "finance_manager"}}}]})
        await sdk.world.engine_knows(template.id)
        approvals = ApprovalManager(admin)
        request = await approvals.create_request(template.id, REQUESTER, trigger_data={"id": f"tr_{run}"},
                                                 request_key=f"escalate-{run}")
        assert request.request_id not in [r.request_id for r in await approvals.get_pending_approvals(MANAGER)]
        # the escalation goes where the template says; the CFO does not choose who counts next
        escalated = await approvals.escalate(request.request_id, by=CFO, reason="CFO on leave")
        assert escalated.approvers == {"type": "role", "value": "finance_manager"}
        assert request.request_id in [r.request_id for r in await approvals.get_pending_approvals(MANAGER)]
        cancelled = await admin.with_token(OPERATOR).cancel(request.workflow_id, "order withdrawn", wait=True)
    assert cancelled.status == "CANCELLED"
    [escalation] = [t for t in cancelled.timeline if t.event_type == "ApprovalEscalated"]
    assert escalation.step == 1 and escalation.details["approvers"] == {"type": "role", "value": "finance_manager"}
