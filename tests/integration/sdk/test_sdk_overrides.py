"""TemplateRegistry.create_from_template: the procurement template with the CFO's role handed to a
controller and a higher amount tier, validated by the server, created, then used end to end."""

from __future__ import annotations

import uuid

import pytest

from flowline.client import Conflict, ValidationFailed
from flowline.overrides import OverrideError
from flowline.prd import ApprovalManager, TemplateRegistry
from tests.integration.sdk.conftest import ADMIN, CFO, CONTROLLER, MANAGER, REQUESTER

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_create_from_template_overrides_a_role_and_the_new_template_is_used(sdk):
    name = f"Procurement (controller) {uuid.uuid4().hex[:6]}"
    async with sdk.client(ADMIN) as admin:
        registry = TemplateRegistry(admin)
        with pytest.raises(OverrideError) as bad:
            await registry.create_from_template("Procurement Approval", {"roles": {"ceo": "controller"}})
        assert bad.value.errors == [("/roles/ceo", "no approver of this template has the role 'ceo'")]

        template = await registry.create_from_template("Procurement Approval", {
            "name": name, "trigger_type": "manual", "roles": {"cfo": "controller"},
            "amounts": {"Check Amount Tier": 5000}, "timeouts": {"CFO Approval": 12}})
        assert template.id != "wf_procurement_approval" and template.version == 1
        cfo_step = template.document["steps"][1]
        assert cfo_step["config"]["approvers"] == {"type": "role", "value": "controller"}
        assert cfo_step["config"]["timeout_hours"] == 12
        assert template.document["steps"][0]["config"]["expression"] == "trigger.amount <= 5000"
        assert (await registry.get_template(name)).id == template.id
        assert name in [t.name for t in await registry.list_templates()]
        original = await admin.get_template("wf_procurement_approval")
        assert original.document["steps"][1]["config"]["approvers"]["value"] == "cfo"  # untouched
        await sdk.world.engine_knows(template.id)

        approvals = ApprovalManager(admin)
        request = await approvals.create_request(template.id, REQUESTER, trigger_data={"id": "tr_ov", "amount": 6000},
                                                 request_key=f"override-{uuid.uuid4().hex}")
        assert (request.step, request.approvers) == (2, {"type": "role", "value": "controller"})
        assert request.request_id in [r.request_id for r in await approvals.get_pending_approvals(CONTROLLER)]
        with pytest.raises(Conflict):
            await approvals.approve(request.request_id, CFO, "the CFO no longer signs this one")
        await approvals.approve(request.request_id, CONTROLLER, "controller signs")
        await admin.wait_for_instance(request.workflow_id, lambda i: i.current_step == 3 and
                                      i.blocking.get("waiting_for") == "approval")
        await approvals.approve(f"{request.workflow_id}:3", MANAGER, "ok")
        await sdk.world.play_action_handler(request.workflow_id, 4)
        done = await admin.wait_for_instance(request.workflow_id)

    assert done.status == "COMPLETED" and done.template_id == template.id
    assert [s.status for s in done.steps] == ["COMPLETED", "APPROVED", "APPROVED", "COMPLETED"]
    assert done.step(2).approved_by == ["acme-controller"]

    # 4000 is now under the tier: the controller is skipped
    async with sdk.client(REQUESTER) as requester:
        small = await requester.start_instance(template.id, {"id": "tr_ov_small", "amount": 4000}, wait=True,
                                               idempotency_key=f"override-small-{uuid.uuid4().hex}")
        small = await requester.wait_for_instance(small.id, lambda i: i.current_step == 3)
    assert small.step(2) is None or small.step(2).status == "SKIPPED"


async def test_the_server_applies_overrides_and_reports_every_problem(sdk):
    """POST /v1/workflows/templates/{id}/instantiate: core.overrides on the server, pointers into the
    override document, then the result validated like any template."""
    async with sdk.client(ADMIN) as admin:
        with pytest.raises(ValidationFailed) as bad:
            await admin.instantiate_template("wf_procurement_approval", {
                "roles": {"ceo": "controller"}, "timeouts": {"No Such Step": 3}})
        assert {e.pointer for e in bad.value.errors} == {"/roles/ceo", "/timeouts/No Such Step"}
        assert ("/roles/ceo", "no approver of this template has the role 'ceo'") in [
            (e.pointer, e.message) for e in bad.value.errors]
        name = f"Procurement (server override) {uuid.uuid4().hex[:6]}"
        made = await admin.instantiate_template("wf_procurement_approval", {"name": name,
                                                                            "roles": {"cfo": "controller"}})
        assert made.name == name and made.id != "wf_procurement_approval"
        assert made.document["steps"][1]["config"]["approvers"] == {"type": "role", "value": "controller"}
