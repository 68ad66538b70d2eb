"""An error while deciding one instance fails that instance (issue 9.9), and expressions that cost too much
or reach outside the sandbox fail their step, never the engine (issue 10.6)."""

from __future__ import annotations

import pytest

from core import events as ev
from core.expressions import ExpressionError, compile_expression
from core.types import TaskStatus, WorkflowStatus
from core.validation import validate_template
from tests.unit.harness import HOUR, Harness, workflow

NOTICE = {"type": "notification", "name": "Tell", "config": {"channel": "webhook", "url": "https://x.test/h"}}


def condition(expression: str, **config) -> dict:
    return {"type": "condition", "name": "Check", "config": {"expression": expression, **config}}


@pytest.mark.parametrize("source", ['len("%0400000000d" % 1) > 0', '"%(nope)s" % trigger == "x"',
                                    '"%s" % trigger.id == "x"'])
def test_string_formatting_is_refused_at_validation(source):
    problems = validate_template(workflow(condition(source)))
    assert any("formats a string" in p.message for p in problems), problems


def test_a_data_string_formatted_at_evaluation_fails_the_step_and_the_instance_says_why():
    h = Harness(workflow(condition("trigger.fmt % trigger == 'x'"), NOTICE))
    h.start({"fmt": "%(nope)s"})
    assert h.status is WorkflowStatus.FAILED
    [failed] = h.events_of(ev.StepFailed)
    assert "formats strings" in failed.error


def test_on_failure_skip_lets_a_failed_condition_move_on():
    h = Harness(workflow(condition("trigger.a / trigger.b > 1", on_failure="skip"), NOTICE))
    h.start({"a": 1, "b": 0})
    assert h.step_status(1) is TaskStatus.SKIPPED
    assert h.current_step == 2 and h.status is WorkflowStatus.ACTIVE


@pytest.mark.parametrize("source,data", [
    ("trigger.s * 200000", {"s": "ab"}),
    ("trigger.s + trigger.s", {"s": "x" * 60_000}),
    ("trigger.n * trigger.n * trigger.n", {"n": 10**600}),
    ("trigger.l * 100001", {"l": [1]}),
])
def test_results_over_the_budget_fail_the_evaluation(source, data):
    with pytest.raises(ExpressionError):
        compile_expression(source).evaluate({"trigger": data})


def test_a_wait_condition_that_fails_to_evaluate_fails_the_step_instead_of_polling_forever():
    h = Harness(workflow({"type": "wait", "name": "Until ready", "config": {
        "condition": "trigger.a / trigger.b > 1", "poll_interval_seconds": 5}}, NOTICE))
    h.start({"a": 1, "b": 0})
    assert h.status is WorkflowStatus.FAILED
    assert h.timers() == []


def test_a_wait_condition_over_missing_data_is_null_and_keeps_waiting():
    h = Harness(workflow({"type": "wait", "name": "Until ready", "config": {
        "condition": "steps.x.count / trigger.zero > 1", "poll_interval_seconds": 5, "on_failure": "skip"}},
        NOTICE))
    h.start({"zero": 0})  # steps.x is null: null / 0 is null, not an error
    assert h.step(1).status is TaskStatus.IN_PROGRESS
    h.fire_due_timers(5_000)
    assert h.step(1).status is TaskStatus.IN_PROGRESS  # still null, still waiting


@pytest.mark.parametrize("poll", [0.001, 0.5])
def test_poll_intervals_under_a_second_are_refused(poll):
    problems = validate_template(workflow({"type": "wait", "name": "W", "config": {
        "condition": "trigger.ok", "poll_interval_seconds": poll}}))
    assert any("at least 1" in p.message for p in problems)


def test_a_stored_template_with_a_tiny_poll_interval_polls_once_a_second_at_most():
    h = Harness(workflow({"type": "wait", "name": "W", "config": {"condition": "trigger.ok",
                                                                  "poll_interval_seconds": 0.001}}))
    h.start({"ok": False})
    [poll] = h.timers("wait_poll")
    assert poll.fire_at - h.now == 1000


class TestAnErrorWhileDecidingFailsTheInstance:
    """Templates here bypass validation (as a template stored by an older release could)."""

    def test_an_error_while_starting_still_starts_the_instance_and_fails_its_step(self):
        h = Harness(workflow({"type": "wait", "name": "W", "config": {"duration_seconds": "soon"}}, NOTICE))
        h.start({})
        assert h.state is not None and h.status is WorkflowStatus.FAILED
        [failed] = h.events_of(ev.StepFailed)
        assert "error while starting" in failed.error and "soon" in failed.error
        assert "soon" in h.state.failure

    def test_the_steps_on_failure_applies(self):
        h = Harness(workflow({"type": "approval", "name": "A", "config": {
            "approvers": {"type": "role", "value": "x"}, "timeout_hours": "never"}}, NOTICE))
        h.start({})
        assert h.status is WorkflowStatus.FAILED
        assert h.events_of(ev.InstanceFailed)

    def test_an_error_on_a_later_command_fails_the_instance_instead_of_dropping_the_command(self):
        h = Harness(workflow({"type": "approval", "name": "A", "config": {
            "approvers": {"type": "role", "value": "x"}, "timeout_hours": 1,
            "on_timeout": {"action": "escalate", "timeout_hours": "later"}}}, NOTICE))
        h.start({})
        assert h.status is WorkflowStatus.ACTIVE
        h.fire_due_timers(HOUR)
        assert h.status is WorkflowStatus.FAILED
        assert "error while deciding FireTimer" in h.state.failure

    def test_a_retry_that_errs_leaves_the_instance_failed_with_the_reason(self):
        h = Harness(workflow({"type": "wait", "name": "W", "config": {"duration_seconds": "soon"}}, NOTICE))
        h.start({})
        h.retry(1)
        assert h.status is WorkflowStatus.FAILED
        assert "error while retrying" in h.last_rejection
