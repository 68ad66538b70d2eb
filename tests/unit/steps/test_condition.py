"""Condition steps: evaluate and branch within the same decision (story 29.4)."""

from __future__ import annotations

from core import events as ev
from core.types import TaskStatus, WorkflowStatus
from tests.unit.harness import Harness, human, workflow


def condition(expression: str, name: str = "Check", **branches) -> dict:
    return {"type": "condition", "name": name, "config": {"expression": expression, **branches}}


def notice(name: str) -> dict:
    return {"type": "notification", "name": name, "config": {"channel": "webhook", "url": "https://x.test/h"}}


def approval(name: str) -> dict:
    return {"type": "approval", "name": name, "config": {"approvers": {"type": "role", "value": "ops"}}}


def run(*steps, trigger=None) -> Harness:
    h = Harness(workflow(*steps))
    h.start(trigger or {})
    return h


def test_true_branch_continues_by_default():
    h = run(condition("trigger.amount > 10"), notice("A"), trigger={"amount": 11})
    [evaluated] = h.events_of(ev.ConditionEvaluated)
    assert (evaluated.result, evaluated.branch) == (True, "if_true")
    assert h.step(1).output == {"result": True, "branch": "if_true"}
    assert h.current_step == 2


def test_skip_to_by_number_skips_the_steps_between():
    h = run(condition("trigger.amount <= 1000", if_true="skip_to:3"), notice("A"), notice("B"),
            trigger={"amount": 5})
    assert h.current_step == 3
    assert h.step_status(2) is TaskStatus.SKIPPED
    [skipped] = h.events_of(ev.StepSkipped)
    assert skipped.reason == "step 1 (Check) went to step 3"


def test_skip_to_by_name():
    h = run(condition("false", if_false="skip_to:B"), notice("A"), notice("B"))
    assert h.current_step == 3


def test_complete_branch_completes_the_instance():
    h = run(condition("true", if_true="complete"), notice("A"))
    assert h.status is WorkflowStatus.COMPLETED
    assert h.step_status(2) is TaskStatus.PENDING
    assert h.current_step == 3


def test_fail_branch_fails_the_instance_with_a_reason():
    h = run(condition("trigger.blocked", if_true="fail"), notice("A"), trigger={"blocked": True})
    assert h.status is WorkflowStatus.FAILED
    assert h.state.failure == "step 1 (Check) branched to fail"


def test_a_missing_field_is_null_and_compares_false():
    h = run(condition("trigger.amount <= 1000", if_true="complete", if_false="fail"), notice("A"))
    assert h.status is WorkflowStatus.FAILED


def test_an_expression_that_fails_to_evaluate_fails_the_step_and_by_default_the_instance():
    h = run(condition("trigger.amount / trigger.count > 1"), notice("A"), trigger={"amount": 1, "count": 0})
    [failed] = h.events_of(ev.StepFailed)
    assert failed.on_failure == "fail_workflow"
    assert "division by zero" in failed.error
    assert h.status is WorkflowStatus.FAILED
    assert "condition failed to evaluate" in h.state.failure


def test_a_condition_reads_the_output_of_an_earlier_step():
    h = run(approval("Review"), condition("'ann' in steps.review.approved_by", if_true="complete", if_false="fail"),
            notice("A"))
    h.approve(1, human("ann", "ops"))
    assert h.status is WorkflowStatus.COMPLETED


def test_a_loop_runs_until_its_condition_exits():
    h = run(approval("Attempt"),
            condition("steps.attempt.approved_by[0] == 'ok'", if_true="complete", if_false="skip_to:1"), notice("A"))
    h.approve(1, human("nope", "ops"))
    assert h.current_step == 1
    assert h.step(1).attempt == 2
    assert h.requests_for(1)[-1].request_id == "wfi_test:1:2"
    h.approve(1, human("nope", "ops"))
    assert h.step(1).attempt == 3
    h.approve(1, human("ok", "ops"))
    assert h.status is WorkflowStatus.COMPLETED


def test_a_loop_with_no_wait_fails_instead_of_spinning_forever():
    h = run(condition("true", if_true="skip_to:1"), notice("A"))
    assert h.status is WorkflowStatus.FAILED
    assert "a loop with no wait" in h.state.failure
