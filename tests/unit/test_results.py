"""`core.results.pipeline_result`: what a run did, from its state and the failed attempts of its trail."""

from __future__ import annotations

from core import events as ev
from core.results import pipeline_result
from tests.unit.harness import Harness, workflow


def run() -> Harness:
    return Harness(workflow(
        {"type": "condition", "name": "Guard", "config": {"expression": "trigger.amount > 0"}},
        {"type": "action", "name": "Fetch", "config": {"action": "lookup_transfer", "params": {"transfer_id": "t"},
                                                      "retry_config": {"max_retries": 1, "backoff_ms": 10}}},
        {"type": "action", "name": "Post", "config": {"action": "lookup_transfer", "params": {"transfer_id": "t"}}},
    ))


def trail(h: Harness) -> list[tuple[int, int, str]]:
    return [(e.step, e.attempt, e.error) for e in h.events if isinstance(e, ev.StepFailed)]


def test_a_retried_failure_is_reported_and_conditions_are_not_results():
    h = run()
    h.start({"amount": 5})
    h.fail(2, "timeout")
    h.fire_due_timers(1000)
    h.succeed(2, {"rate": 1.1})
    result = pipeline_result(h.state, h.template, trail(h))
    assert result["status"] == "ACTIVE" and result["current_step"] == "Post"
    assert result["steps_completed"] == ["Fetch"] and result["outputs"] == {"Fetch": {"rate": 1.1}}
    assert [(f["step"], f["attempt"], f["error"]) for f in result["failures"]] == [("Fetch", 1, "timeout")]
    h.fail(3, "ledger down", retryable=False)
    done = pipeline_result(h.state, h.template, trail(h))
    assert done["status"] == "FAILED" and done["steps_failed"] == ["Post"] and done["current_step"] is None
    assert [(f["step"], f["attempt"]) for f in done["failures"]] == [("Fetch", 1), ("Post", 1)]


def test_without_the_trail_only_the_latest_failures_show():
    h = run()
    h.start({"amount": 5})
    h.fail(2, "timeout")
    h.fire_due_timers(1000)
    h.succeed(2, {"rate": 1.1})
    assert pipeline_result(h.state, h.template)["failures"] == []
