"""The five built-in templates are valid and run end to end through their main branches."""

from __future__ import annotations

import pytest

from core import events as ev
from core.builtin import BUILTIN_NAMES, builtin_template
from core.types import TaskStatus, WorkflowStatus
from core.validation import validate_template
from tests.unit.harness import HOUR, T0, Harness, agent, human


@pytest.mark.parametrize("name", BUILTIN_NAMES)
def test_builtin_template_is_valid(name):
    assert validate_template(builtin_template(name)) == []


def test_builtin_template_is_a_fresh_copy_each_time():
    doc = builtin_template("procurement_approval")
    doc["steps"].clear()
    assert builtin_template("procurement_approval")["steps"]


def test_unknown_builtin_names_the_ones_there_are():
    with pytest.raises(KeyError, match="procurement_approval"):
        builtin_template("nope")


class TestProcurement:
    def test_amount_up_to_1000_skips_the_cfo(self):
        h = Harness("procurement_approval")
        h.start({"id": "tr_1", "amount": 1000}, initiated_by=human("u_req"))
        assert h.step_status(2) is TaskStatus.SKIPPED
        h.approve(3, human("u_fm", "finance_manager"))
        [pay] = h.orders_for(4)  # the engine orders the payment itself (docs/adr/0023)
        assert pay.action == "execute_transfer" and pay.params["transfer_id"] == "tr_1"
        assert pay.params["expected"] == {"instance_id": h.instance_id, "trigger": {"id": "tr_1", "amount": 1000},
                                          "params": {}}
        h.succeed(4, {"transfer_status": "completed"})
        assert h.status is WorkflowStatus.COMPLETED

    def test_amount_above_1000_needs_the_cfo_then_the_manager(self):
        h = Harness("procurement_approval")
        h.start({"id": "tr_1", "amount": 5000})
        assert h.current_step == 2
        h.approve(2, human("u_fm", "finance_manager"))
        assert "not among the approvers (role cfo)" in h.last_rejection
        h.approve(2, human("u_cfo", "cfo"))
        h.approve(3, human("u_fm", "finance_manager"))
        h.succeed(4, {})
        assert h.status is WorkflowStatus.COMPLETED

    def test_an_agent_within_its_limit_approves_the_manager_step(self):
        h = Harness("procurement_approval")
        h.start({"id": "tr_1", "amount": 800})
        h.approve(3, agent("agent_456", max_amount=1000, step_names=("Manager Approval",)), "vendor pre-approved")
        assert h.step_status(3) is TaskStatus.APPROVED

    def test_manager_timeout_fails_the_instance(self):
        h = Harness("procurement_approval")
        h.start({"id": "tr_1", "amount": 10})
        h.fire_due_timers(24 * HOUR)
        assert h.status is WorkflowStatus.FAILED


class TestTrade:
    def test_dual_approval_needs_two_distinct_risk_officers(self):
        h = Harness("trade_approval")
        h.start({"id": "tr_9", "amount": 75_000})
        h.approve(1, human("r_1", "risk_officer"))
        h.approve(1, human("r_1", "risk_officer"))
        assert h.last_rejection == "r_1 already decided step 1"
        h.approve(1, human("r_2", "risk_officer"))
        h.succeed(2, {"settled": True})
        h.succeed(3, {"status": 200})
        assert h.status is WorkflowStatus.COMPLETED

    def test_timeout_escalates_to_the_head_of_risk_then_auto_rejects(self):
        h = Harness("trade_approval")
        h.start({"id": "tr_9", "amount": 75_000})
        h.fire_due_timers(4 * HOUR)
        assert h.step(1).approvers == {"type": "role", "value": "head_of_risk"}
        h.fire_due_timers(2 * HOUR)
        [rejected] = h.events_of(ev.StepRejected)
        assert rejected.automatic
        assert h.status is WorkflowStatus.FAILED


class TestCompliance:
    def test_async_screening_with_low_risk_goes_straight_to_release(self):
        h = Harness("compliance_review")
        h.start({"id": "tr_3", "amount": 100})
        assert h.requests_for(1)[0].config["body"] == {"transfer_id": "tr_3", "amount": 100}
        h.accept(1)
        h.callback(1, "completed", {"compliance_status": "approved", "risk_score": 0.12})
        assert h.step_status(3) is TaskStatus.SKIPPED
        h.succeed(4, {})
        assert h.status is WorkflowStatus.COMPLETED

    def test_high_risk_goes_to_a_two_of_three_committee(self):
        h = Harness("compliance_review")
        h.start({"id": "tr_3", "amount": 100})
        h.accept(1)
        h.callback(1, "completed", {"risk_score": 0.8})
        assert h.current_step == 3
        h.approve(3, human("co_alice"))
        h.reject(3, human("co_bob"))
        h.approve(3, human("co_carol"))
        assert h.step(3).output == {"approved_by": ["co_alice", "co_carol"]}
        assert h.current_step == 4

    def test_a_missing_callback_goes_to_human_review(self):
        h = Harness("compliance_review")
        h.start({"id": "tr_3", "amount": 100})
        h.accept(1)
        h.fire_due_timers(24 * HOUR)
        assert h.step(1).approvers == {"type": "role", "value": "compliance_officer"}
        h.approve(1, human("cco", "compliance_officer"))
        # the reviewed step has no output, so the risk condition sees null and goes to the committee
        assert h.current_step == 3


class TestModelDeployment:
    def test_validation_sign_off_by_the_agent_window_then_email(self):
        h = Harness("model_deployment")
        h.start({"validation_url": "https://v.test/run", "model": "pricing", "version": "7",
                 "deploy_at": "2026-01-01T06:00:00Z", "owner_email": "owner@x.test"})
        h.succeed(1, {"status": 200, "body": {"passed": True, "metrics": {"auc": 0.91}}})
        assert h.step(1).output == {"status": 200, "auc": 0.91}
        h.approve(2, agent("agent_mrm", limits=False), "metrics above the bar")
        assert h.step(3).awaiting.value == "time"
        assert h.timers()[0].fire_at == T0 + 6 * HOUR
        h.fire_due_timers(6 * HOUR)
        [email] = h.requests_for(4)
        assert email.config["subject"] == "Model pricing deployed"
        assert email.config["text"] == "Version 7 is live (AUC 0.91)."
        h.succeed(4, {})
        assert h.status is WorkflowStatus.COMPLETED

    def test_failed_validation_is_retried_then_fails(self):
        h = Harness("model_deployment")
        h.start({"validation_url": "https://v.test/run", "model": "m", "version": "1", "deploy_at": T0})
        for _ in range(2):
            h.succeed(1, {"status": 200, "body": {"passed": False}})
            h.fire_due_timers(10_000)
        h.succeed(1, {"status": 200, "body": {"passed": False}})
        assert h.status is WorkflowStatus.FAILED


class TestOnboarding:
    def test_low_risk_customers_are_auto_approved_and_skip_the_officer(self):
        h = Harness("account_onboarding")
        h.start({"metadata": {"customer_id": "c_1", "email": "new@x.test"}})
        assert h.requests_for(1)[0].config["url"] == "{{payos.crm_url}}/customers/c_1"
        h.succeed(1, {"status": 200, "body": {"kyc_level": 3}})
        assert h.step_status(3) is TaskStatus.APPROVED
        assert h.step_status(5) is TaskStatus.SKIPPED
        assert h.requests_for(6)[0].config["to"] == "new@x.test"
        h.succeed(6, {})
        assert h.status is WorkflowStatus.COMPLETED

    def test_other_customers_go_to_an_onboarding_officer(self):
        h = Harness("account_onboarding")
        h.start({"metadata": {"customer_id": "c_1", "email": "new@x.test"}})
        h.succeed(1, {"status": 200, "body": {"kyc_level": 1}})
        assert [h.step_status(n) for n in (3, 4)] == [TaskStatus.SKIPPED, TaskStatus.SKIPPED]
        h.approve(5, human("o_1", "onboarding_officer"))
        assert h.current_step == 6
        assert h.step(3).output is None

    def test_an_officer_who_does_not_answer_rejects_the_account(self):
        h = Harness("account_onboarding")
        h.start({"metadata": {"customer_id": "c_1"}})
        h.succeed(1, {"status": 200, "body": {}})
        h.fire_due_timers(72 * HOUR)
        assert h.step_status(5) is TaskStatus.REJECTED
        assert h.status is WorkflowStatus.FAILED
