"""The ApprovalManager facade: which commands it sends, and what it reads back."""

from __future__ import annotations

from core.actors import Actor
from core.commands import EscalateApproval, RecordDecision, StartInstance
from handlers.approval_manager import ApprovalManager, FakeCommandSink

CFO = Actor(id="u_cfo", roles=("cfo",), tenant_id="t1")


class FakeReads:
    def __init__(self, pending=(), steps=None):
        self.pending, self.steps = list(pending), steps or {}

    async def pending_for(self, actor):
        return self.pending

    async def step(self, instance_id, step):
        return self.steps.get((instance_id, step))


def manager(reads=None):
    sink = FakeCommandSink()
    return ApprovalManager(sink, reads or FakeReads(), clock=lambda: 1000), sink


async def test_approve_and_reject_send_record_decision_commands_with_stable_ids():
    m, sink = manager()
    decision = await m.approve("wfi_1:2", CFO, "looks right")
    await m.reject("wfi_1:3", CFO, "no")
    first, second = sink.sent
    assert isinstance(first, RecordDecision)
    assert (first.instance_id, first.step, first.decision) == ("wfi_1", 2, "approve")
    assert first.command_id == decision.decision_id == "decide:wfi_1:2:u_cfo"
    assert (second.step, second.decision, second.reasoning) == (3, "reject", "no")


async def test_create_request_starts_an_instance_idempotently():
    m, sink = manager()
    a = await m.create_request("tpl_trade", CFO, "DUAL", template_version=1, tenant_id="t1", trigger={"x": 1},
                               request_key="req-1")
    b = await m.create_request("tpl_trade", CFO, "DUAL", template_version=1, tenant_id="t1", trigger={"x": 1},
                               request_key="req-1")
    assert a.workflow_id == b.workflow_id
    start = sink.sent[0]
    assert isinstance(start, StartInstance) and start.initiated_by == CFO
    assert start.trigger == {"x": 1, "approval_level": "DUAL"}


async def test_check_quorum_counts_the_recorded_votes():
    steps = {("wfi_1", 2): {"status": "IN_PROGRESS", "required": 2, "approvers": {"type": "role", "value": "cfo"},
                            "votes": '[{"actor_id": "a", "decision": "approve"}]'},
             ("wfi_1", 3): {"status": "APPROVED", "required": 1, "approvers": None, "votes": "[]"}}
    m, _ = manager(FakeReads(steps=steps))
    assert await m.check_quorum("wfi_1:2") is False
    assert await m.check_quorum("wfi_1:3") is True


async def test_pending_approvals_are_filtered_by_the_approver_spec():
    rows = [{"instance_id": "wfi_1", "step": 2, "approvers": '{"type": "role", "value": "cfo"}', "required": 1},
            {"instance_id": "wfi_2", "step": 1, "approvers": '{"type": "role", "value": "ceo"}', "required": 1}]
    m, _ = manager(FakeReads(pending=rows))
    assert [r.request_id for r in await m.get_pending_approvals(CFO)] == ["wfi_1:2"]


async def test_escalating_before_the_timeout_sends_an_escalate_approval_command():
    m, sink = manager()
    await m.escalate("wfi_1:2", {"type": "role", "value": "ceo"}, actor=CFO, reason="on leave", timeout_hours=4)
    [command] = sink.sent
    assert isinstance(command, EscalateApproval)
    assert (command.instance_id, command.step, command.approvers) == ("wfi_1", 2, {"type": "role", "value": "ceo"})
    assert (command.actor, command.reason, command.timeout_hours) == (CFO, "on leave", 4)
