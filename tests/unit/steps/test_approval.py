"""Approval steps: quorum levels, who may decide, agent limits, timeouts and escalation (stories 29.3, 29.8, 29.12)."""

from __future__ import annotations

from core import events as ev
from core.types import ActorKind, Awaiting, TaskStatus, WorkflowStatus
from tests.unit.harness import HOUR, Harness, agent, human, workflow

DONE = {"type": "notification", "name": "Done", "config": {"channel": "webhook", "url": "https://x.test/hook"}}


def approval(name: str = "Sign-off", **config) -> dict:
    config.setdefault("approvers", {"type": "role", "value": "approver"})
    return {"type": "approval", "name": name, "config": config}


def started(*steps, trigger=None, **kwargs) -> Harness:
    h = Harness(workflow(*steps))
    h.start(trigger if trigger is not None else {"amount": 500}, **kwargs)
    return h


ALICE = human("alice", "approver")
BOB = human("bob", "approver")
CAROL = human("carol", "approver")


class TestSingle:
    def test_single_approval_by_an_eligible_approver_moves_on(self):
        h = started(approval(), DONE)
        h.approve(1, ALICE, "looks fine")
        assert h.step_status(1) is TaskStatus.APPROVED
        assert h.step(1).output == {"approved_by": ["alice"]}
        assert h.current_step == 2

    def test_approval_asks_the_approval_handler_to_notify_the_approvers(self):
        h = started(approval(timeout_hours=2), DONE)
        [request] = h.requests_for(1)
        assert request.kind == "approval"
        assert request.request_id == "wfi_test:1:1"
        assert request.config["approvers"] == {"type": "role", "value": "approver"}
        assert request.config["required"] == 1
        assert request.config["deadline"] == h.now + 2 * HOUR

    def test_single_rejection_fails_the_instance_by_default(self):
        h = started(approval(), DONE)
        h.reject(1, ALICE, "wrong vendor")
        assert h.step_status(1) is TaskStatus.REJECTED
        assert h.status is WorkflowStatus.FAILED
        assert "alice: wrong vendor" in h.state.failure

    def test_on_reject_can_branch_to_another_step(self):
        h = started(approval(on_reject="skip_to:Rejected notice"), DONE,
                    {"type": "notification", "name": "Rejected notice",
                     "config": {"channel": "webhook", "url": "https://x.test/rejected"}})
        h.reject(1, ALICE)
        assert h.current_step == 3
        assert h.step_status(2) is TaskStatus.SKIPPED

    def test_someone_outside_the_approvers_is_refused(self):
        h = started(approval(), DONE)
        h.approve(1, human("mallory", "intern"))
        assert "mallory is not among the approvers (role approver)" in h.last_rejection
        assert h.step(1).votes == ()

    def test_a_named_user_may_approve(self):
        h = started(approval(approvers={"type": "user", "value": ["u_1", "u_2"]}), DONE)
        h.approve(1, human("u_2"))
        assert h.step_status(1) is TaskStatus.APPROVED

    def test_requester_cannot_approve_own_request(self):
        h = started(approval(), DONE, initiated_by=ALICE)
        h.approve(1, ALICE)
        assert h.last_rejection == "alice started this instance and cannot approve it"
        h.approve(1, BOB)
        assert h.step_status(1) is TaskStatus.APPROVED

    def test_the_system_cannot_vote(self):
        from core.actors import SYSTEM

        h = started(approval(), DONE)
        h.approve(1, SYSTEM)
        assert h.last_rejection == "the system cannot vote on an approval"

    def test_an_actor_of_another_tenant_is_refused(self):
        h = started(approval(), DONE)
        h.approve(1, human("eve", "approver", tenant_id="t_other"))
        assert h.last_rejection == "eve belongs to another tenant"

    def test_another_tenants_refusal_stays_out_of_the_instances_sequence(self):
        """Issue 10: the refusal carries the actor and its tenant and has seq 0, so it is not an entry of the
        instance's audit trail; the state is untouched (not even seq or updated_at)."""
        h = started(approval(), DONE)
        before = h.state
        h.now += 1000
        h.approve(1, human("eve", "approver", tenant_id="t_other"))
        (rejection,) = h.last.events
        assert (rejection.seq, rejection.actor_id, rejection.actor_tenant_id) == (0, "eve", "t_other")
        assert h.state is before

    def test_a_decision_that_is_neither_approve_nor_reject_is_refused(self):
        h = started(approval(), DONE)
        h.decide_step(1, ALICE, "maybe")
        assert h.last_rejection == "Expected decision 'approve' or 'reject', but got 'maybe'"


class TestDual:
    def test_dual_approval_needs_two_distinct_approvers(self):
        h = started(approval(level="DUAL"), DONE)
        h.approve(1, ALICE)
        assert h.step(1).status is TaskStatus.IN_PROGRESS
        assert h.step(1).awaiting is Awaiting.APPROVAL
        h.approve(1, BOB)
        assert h.step(1).output == {"approved_by": ["alice", "bob"]}
        assert h.current_step == 2

    def test_same_approver_twice_is_rejected(self):
        h = started(approval(level="DUAL"), DONE)
        h.approve(1, ALICE)
        h.approve(1, ALICE)
        assert h.last_rejection == "alice already decided step 1"
        assert len(h.step(1).votes) == 1
        assert h.step_status(1) is TaskStatus.IN_PROGRESS

    def test_dual_approval_is_rejected_by_any_rejection(self):
        h = started(approval(level="DUAL"), DONE)
        h.approve(1, ALICE)
        h.reject(1, BOB, "too risky")
        assert h.step_status(1) is TaskStatus.REJECTED
        assert h.status is WorkflowStatus.FAILED


class TestCommittee:
    MEMBERS = {"type": "user", "value": ["alice", "bob", "carol"]}

    def test_committee_approves_at_quorum(self):
        h = started(approval(level="COMMITTEE", quorum=2, approvers=self.MEMBERS), DONE)
        h.reject(1, human("alice"))
        h.approve(1, human("bob"))
        assert h.step_status(1) is TaskStatus.IN_PROGRESS
        h.approve(1, human("carol"))
        assert h.step_status(1) is TaskStatus.APPROVED
        assert h.step(1).output == {"approved_by": ["bob", "carol"]}

    def test_committee_is_rejected_once_quorum_is_out_of_reach(self):
        h = started(approval(level="COMMITTEE", quorum=2, approvers=self.MEMBERS), DONE)
        h.reject(1, human("alice"))
        assert h.step_status(1) is TaskStatus.IN_PROGRESS
        h.reject(1, human("bob"))
        assert h.step_status(1) is TaskStatus.REJECTED

    def test_committee_without_quorum_needs_a_majority_of_named_members(self):
        h = started(approval(level="COMMITTEE", approvers=self.MEMBERS), DONE)
        assert h.step(1).required == 2

    def test_committee_by_role_is_rejected_when_rejections_reach_quorum(self):
        h = started(approval(level="COMMITTEE", quorum=2), DONE)
        h.reject(1, ALICE)
        h.approve(1, BOB)
        assert h.step_status(1) is TaskStatus.IN_PROGRESS
        h.reject(1, CAROL)
        assert h.step_status(1) is TaskStatus.REJECTED


class TestAuto:
    def test_auto_approval_approves_at_once_without_asking_anyone(self):
        h = started({"type": "approval", "name": "Auto", "config": {"level": "AUTO"}}, DONE)
        assert h.step_status(1) is TaskStatus.APPROVED
        [approved] = h.events_of(ev.StepApproved)
        assert approved.automatic
        assert approved.approved_by == ("flowline",)
        assert h.requests_for(1) == []
        assert h.current_step == 2


class TestAgents:
    def test_agent_approval_within_its_limits_is_recorded_as_an_agent_decision(self):
        h = started(approval("Manager Approval", approvers={"type": "role", "value": "finance_manager"}), DONE,
                    trigger={"amount": 800})
        h.approve(1, agent("agent_456", max_amount=1000, step_names=("Manager Approval",)), "within limit")
        assert h.step_status(1) is TaskStatus.APPROVED
        [vote] = h.step(1).votes
        assert vote.actor_kind is ActorKind.AGENT
        assert vote.reasoning == "within limit"
        [recorded] = h.events_of(ev.DecisionRecorded)
        assert recorded.actor.kind is ActorKind.AGENT

    def test_agent_is_refused_above_its_max_amount(self):
        h = started(approval("Manager Approval"), DONE, trigger={"amount": 5000})
        h.approve(1, agent("agent_456", max_amount=1000, escalate_above_limit=False))
        assert h.last_rejection == "amount 5000 is above agent_456's approval limit of 1000"
        assert h.step_status(1) is TaskStatus.IN_PROGRESS

    def test_above_its_limit_an_agent_escalates_to_humans_with_its_recommendation(self):
        h = started(approval("Manager Approval"), DONE, trigger={"amount": 5000})
        h.approve(1, agent("agent_456", max_amount=1000), reasoning="vendor known, PO matches")
        recommendation, rejection = h.last_events
        assert isinstance(recommendation, ev.AgentRecommendation) and isinstance(rejection, ev.CommandRejected)
        assert rejection.reason.startswith("amount 5000 is above agent_456's approval limit of 1000; the step "
                                           "stays open")
        note, = h.state.steps[0].recommendations
        assert (note.actor_id, note.decision, note.reasoning) == ("agent_456", "approve", "vendor known, PO matches")
        assert h.step_status(1) is TaskStatus.IN_PROGRESS and h.state.steps[0].votes == ()
        h.approve(1, agent("agent_456", max_amount=1000))
        assert "already recommended" in h.last_rejection
        h.approve(1, human("mia", "approver"))  # the human decides
        assert h.step_status(1) is TaskStatus.APPROVED

    def test_an_agent_whose_approval_does_not_count_only_recommends(self):
        h = started(approval("Manager Approval"), DONE, trigger={"amount": 50})
        h.approve(1, agent("agent_456", max_amount=1000, counts_toward_quorum=False), reasoning="looks fine")
        assert [type(e) for e in h.last_events] == [ev.AgentRecommendation]
        assert h.step_status(1) is TaskStatus.IN_PROGRESS
        assert h.state.steps[0].recommendations[0].refusal == ""
        h.reject(1, agent("agent_456", max_amount=1000, counts_toward_quorum=False), reasoning="no")
        assert "already recommended" in h.last_rejection

    def test_an_agent_decides_only_in_its_currencies(self):
        h = started(approval("Manager Approval"), DONE, trigger={"amount": 50, "currency": "EUR"})
        h.approve(1, agent("agent_456", max_amount=1000, currencies=("USD",)))
        assert h.last_rejection == "agent_456 may only decide in USD, not EUR"
        h.approve(1, agent("agent_456", max_amount=1000, currencies=("USD", "EUR")))
        assert h.step_status(1) is TaskStatus.APPROVED

    def test_a_currency_refusal_is_not_escalated_even_above_the_limit(self):
        h = started(approval("Manager Approval"), DONE, trigger={"amount": 5000, "currency": "EUR"})
        h.approve(1, agent("agent_456", max_amount=1000, currencies=("USD",)))
        assert h.last_rejection == "agent_456 may only decide in USD, not EUR"

    def test_an_agent_decides_only_within_its_hours_judged_by_the_command_time(self):
        h = started(approval("Manager Approval"), DONE, trigger={"amount": 50})
        assert h.now % (24 * HOUR) == 0  # the harness clock starts at midnight UTC
        h.approve(1, agent("agent_456", max_amount=1000, hours=("09:00-17:00",)))
        assert h.last_rejection == "agent_456 may only decide within 09:00-17:00 UTC, not at 00:00"
        h.approve(1, agent("agent_456", max_amount=1000, hours=("09:00-17:00", "22:00-02:00")))
        assert h.step_status(1) is TaskStatus.APPROVED

    def test_agent_is_refused_on_steps_outside_its_step_names(self):
        h = started(approval("CFO Approval"), DONE, trigger={"amount": 10})
        h.approve(1, agent("agent_456", max_amount=1000, step_names=("Manager Approval",)))
        assert h.last_rejection == "agent_456 may only decide steps Manager Approval, not 'CFO Approval'"

    def test_agent_with_a_max_amount_is_refused_when_the_trigger_has_no_amount(self):
        h = started(approval(), DONE, trigger={"vendor": "x"})
        h.approve(1, agent("agent_456", max_amount=1000))
        assert "has a max_amount limit but the trigger has no numeric amount" in h.last_rejection

    def test_agent_without_permission_is_refused_unless_named(self):
        h = started(approval(approvers={"type": "agent", "value": "agent_ok"}), DONE)
        h.approve(1, agent("agent_other", limits=False))
        assert "agent_other is not among the approvers (agent agent_ok)" in h.last_rejection
        h.approve(1, agent("agent_ok", limits=False))
        assert h.step_status(1) is TaskStatus.APPROVED

    def test_a_human_cannot_pass_for_a_named_agent(self):
        h = started(approval(approvers={"type": "agent", "value": "agent_ok"}), DONE)
        h.approve(1, human("agent_ok"))
        assert "not among the approvers" in h.last_rejection


class TestTimeouts:
    def test_timeout_fails_by_default(self):
        h = started(approval(timeout_hours=1), DONE)
        h.fire_due_timers(HOUR)
        assert h.step_status(1) is TaskStatus.TIMED_OUT
        assert h.status is WorkflowStatus.FAILED
        assert h.state.failure == "step 1 (Sign-off) timed out"

    def test_timer_does_not_fire_before_its_deadline(self):
        h = started(approval(timeout_hours=1), DONE)
        assert h.fire_due_timers(HOUR - 1) == []
        assert h.step_status(1) is TaskStatus.IN_PROGRESS

    def test_auto_approve_on_timeout(self):
        h = started(approval(timeout_hours=1, on_timeout="auto_approve"), DONE)
        h.fire_due_timers(HOUR)
        assert h.step_status(1) is TaskStatus.APPROVED
        assert h.events_of(ev.StepApproved)[0].automatic
        assert h.current_step == 2

    def test_auto_reject_on_timeout(self):
        h = started(approval(timeout_hours=1, on_timeout="auto_reject"), DONE)
        h.fire_due_timers(HOUR)
        assert h.step_status(1) is TaskStatus.REJECTED
        assert h.status is WorkflowStatus.FAILED

    def test_continue_on_timeout_moves_on(self):
        h = started(approval(timeout_hours=1, on_timeout="continue"), DONE)
        h.fire_due_timers(HOUR)
        assert h.step_status(1) is TaskStatus.TIMED_OUT
        assert h.status is WorkflowStatus.ACTIVE
        assert h.current_step == 2

    def test_escalation_re_arms_the_deadline_for_new_approvers_then_applies_then(self):
        h = started(approval(level="DUAL", timeout_hours=4, on_timeout={
            "action": "escalate", "approvers": {"type": "role", "value": "head"}, "timeout_hours": 2,
            "then": "auto_reject"}), DONE)
        h.approve(1, ALICE)
        h.fire_due_timers(4 * HOUR)
        escalated = h.events_of(ev.ApprovalEscalated)
        assert [e.escalation for e in escalated] == [1]
        assert h.step(1).approvers == {"type": "role", "value": "head"}
        assert [t.fire_at for t in h.timers("approval_timeout")] == [h.now + 2 * HOUR]
        assert h.requests_for(1)[-1].request_id == "wfi_test:1:1:escalation-1"
        assert h.requests_for(1)[-1].config["escalated_from"] == {"type": "role", "value": "approver"}
        h.fire_due_timers(2 * HOUR)
        assert h.step_status(1) is TaskStatus.REJECTED
        assert h.status is WorkflowStatus.FAILED

    def test_escalated_approvers_make_the_whole_quorum_again(self):
        h = started(approval(level="DUAL", timeout_hours=4, on_timeout={
            "action": "escalate", "approvers": {"type": "role", "value": "head"}}), DONE)
        h.approve(1, ALICE)
        h.fire_due_timers(4 * HOUR)
        h.approve(1, BOB)
        assert "bob is not among the approvers (role head)" in h.last_rejection
        h.approve(1, human("hd", "head"))
        assert h.step(1).awaiting is Awaiting.APPROVAL  # alice's vote predates the escalation: one of two
        h.approve(1, human("hd2", "head"))
        assert h.step_status(1) is TaskStatus.APPROVED
        assert h.step(1).output == {"approved_by": ["hd", "hd2"]}

    def test_escalation_then_continue_moves_on_after_the_last_escalation(self):
        h = started(approval(timeout_hours=1, on_timeout={"action": "escalate", "then": "continue"}), DONE)
        h.fire_due_timers(HOUR)
        assert h.step(1).escalation == 1
        h.fire_due_timers(HOUR)
        assert h.step_status(1) is TaskStatus.TIMED_OUT
        assert h.status is WorkflowStatus.ACTIVE
        assert h.current_step == 2

    def test_escalation_can_happen_more_than_once(self):
        h = started(approval(timeout_hours=1, on_timeout={"action": "escalate", "max_escalations": 2,
                                                          "then": "auto_approve"}), DONE)
        h.fire_due_timers(HOUR)
        h.fire_due_timers(HOUR)
        assert [e.escalation for e in h.events_of(ev.ApprovalEscalated)] == [1, 2]
        h.fire_due_timers(HOUR)
        assert h.step_status(1) is TaskStatus.APPROVED

    def test_escalate_to_is_used_when_the_escalation_names_no_approvers(self):
        h = started(approval(timeout_hours=1, on_timeout="escalate", escalate_to={"type": "role", "value": "vp"}),
                    DONE)
        h.fire_due_timers(HOUR)
        assert h.step(1).approvers == {"type": "role", "value": "vp"}

    def test_a_decision_after_the_step_ended_is_rejected(self):
        h = started(approval(timeout_hours=1, on_timeout="continue"), approval("Second"))
        h.fire_due_timers(HOUR)
        h.approve(1, ALICE)
        assert h.last_rejection == "Expected a decision for step 2, but got one for step 1"


class TestManualEscalation:
    """The PRD's ApprovalManager.escalate: hand a waiting approval on before its timeout."""

    CEO = human("ceo_dan", "ceo")

    def escalate(self, h: Harness, actor, approvers=None, **kw):
        from core.commands import EscalateApproval

        return h.send(EscalateApproval(command_id=h.next_command_id(), instance_id=h.instance_id, step=1,
                                       approvers=approvers or {"type": "role", "value": "ceo"}, actor=actor, **kw))

    def test_an_approver_can_hand_the_decision_to_other_approvers_with_a_new_deadline(self):
        h = started(approval(timeout_hours=24, escalate_to={"type": "role", "value": "ceo"}), DONE)
        self.escalate(h, ALICE, reason="on leave", timeout_hours=2)
        [escalated] = h.events_of(ev.ApprovalEscalated)
        assert escalated.approvers == {"type": "role", "value": "ceo"} and escalated.escalation == 1
        [timer] = h.timers("approval_timeout")
        assert timer.fire_at == h.now + 2 * HOUR  # the old 24 h deadline is gone
        assert h.requests_for(1)[-1].request_id == "wfi_test:1:1:escalation-1"
        h.approve(1, self.CEO)
        assert h.step_status(1) is TaskStatus.APPROVED

    def test_after_escalation_the_old_approvers_can_no_longer_decide(self):
        h = started(approval(escalate_to={"type": "role", "value": "ceo"}), DONE)
        self.escalate(h, ALICE)
        h.approve(1, BOB)
        assert "not among the approvers" in h.last_rejection
        assert h.step(1).awaiting is Awaiting.APPROVAL

    def test_someone_who_is_not_an_approver_cannot_escalate(self):
        h = started(approval(escalate_to={"type": "role", "value": "ceo"}), DONE)
        self.escalate(h, human("mallory", "clerk"))
        assert "may not escalate" in h.last_rejection
        assert not h.events_of(ev.ApprovalEscalated)

    def test_a_workflow_admin_may_escalate_any_approval(self):
        h = started(approval(escalate_to={"type": "role", "value": "ceo"}), DONE)
        self.escalate(h, human("root", "workflow_admin"))
        assert h.events_of(ev.ApprovalEscalated)
