"""Action steps: a payment the engine orders itself, anything else a request to the action handler; the
result judged here, retries and on_failure (story 29.5, docs/adr/0023)."""

from __future__ import annotations

from core import events as ev
from core.types import Awaiting, TaskStatus, WorkflowStatus
from tests.unit.harness import Harness, human, workflow


def action(**config) -> dict:
    config.setdefault("action", "execute_transfer")
    config.setdefault("params", {"transfer_id": "{{trigger.id}}", "amount": "{{trigger.amount}}"})
    return {"type": "action", "name": "Pay", "config": config}


def http(**config) -> dict:
    """An action the action handler performs (the engine orders payments only)."""
    return action(action="http_request", params={"url": "https://erp.test/po/{{trigger.id}}"}, **config)


NEXT = {"type": "notification", "name": "Next", "config": {"channel": "webhook", "url": "https://x.test/h"}}


def run(*steps) -> Harness:
    h = Harness(workflow(*steps))
    h.start({"id": "tr_9", "amount": 42.5})
    return h


def test_a_payment_is_ordered_by_the_engine_under_the_visits_key_with_the_instances_facts():
    h = run(action(timeout_seconds=20), NEXT)
    assert h.requests_for(1) == []  # no handler request: the order is the engine's own effect
    [order] = h.orders_for(1)
    assert order.idempotency_key == "wfi_test:1:v1"
    assert (order.action, order.tenant_id, order.requested_at) == ("execute_transfer", "t_acme", h.now)
    assert order.params == {"transfer_id": "tr_9", "amount": 42.5,
                            "expected": {"instance_id": "wfi_test", "trigger": {"id": "tr_9", "amount": 42.5},
                                         "params": {"amount": 42.5}}}
    [requested] = h.events_of(ev.StepRequested)
    assert (requested.kind, requested.idempotency_key, requested.deadline) == ("payment", "wfi_test:1:v1",
                                                                                h.now + 20_000)
    assert requested.request == {"action": "execute_transfer", "params": {"transfer_id": "tr_9", "amount": 42.5},
                                 "timeout_seconds": 20, "operation_key": "wfi_test:1:v1"}  # the trail: no facts
    assert h.step(1).awaiting is Awaiting.PAYMENT
    [timeout] = h.timers("payment_timeout")
    assert timeout.fire_at == h.now + 20_000


def test_a_simulated_transfer_is_ordered_without_facts():
    h = run(action(action="simulate_transfer"), NEXT)
    [order] = h.orders_for(1)
    assert order.action == "simulate_transfer" and "expected" not in order.params


def test_a_payment_whose_params_need_a_handler_goes_to_the_action_handler():
    h = run(action(params={"transfer_id": "{{trigger.id}}", "memo": "{{secrets.memo}}"}), NEXT)
    assert h.orders == []
    [request] = h.requests_for(1)
    assert request.request_id == "wfi_test:1:1" and request.kind == "action"
    assert request.config == {"action": "execute_transfer",
                              "params": {"transfer_id": "tr_9", "memo": "{{secrets.memo}}"},
                              "timeout_seconds": 30, "operation_key": "wfi_test:1:v1"}
    assert request.context["trigger"] == {"id": "tr_9", "amount": 42.5}
    assert h.step(1).awaiting is Awaiting.HANDLER
    h.paid(1, "succeeded", {"paid": True}, key="wfi_test:1:v1")  # the relay's copy: the handler reports it
    assert "pays through the action handler" in h.last_rejection
    h.succeed(1, {"paid": True})
    assert h.current_step == 2


def test_the_payment_services_answer_completes_the_step():
    h = run(action(), NEXT)
    h.paid(1, "succeeded", {"payment_id": "p1"})
    assert h.step(1).output == {"payment_id": "p1"} and h.current_step == 2
    assert h.timers("payment_timeout") == []


def test_a_refused_payment_fails_the_step_at_once_and_says_nothing_was_paid():
    h = run(action(retry_config={"max_retries": 3}), NEXT)
    h.paid(1, "failed", error="transfer tr_9 is unknown to the payment system")
    assert h.status is WorkflowStatus.FAILED
    assert h.step(1).error == ("execute_transfer failed: transfer tr_9 is unknown to the payment system; "
                               "nothing was paid")
    assert h.timers() == []


def test_an_unanswered_order_times_out_and_is_ordered_again_under_the_same_key():
    h = run(action(retry_config={"max_retries": 2, "backoff_ms": 1000}), NEXT)
    h.fire_due_timers(30_000)
    [failed] = h.events_of(ev.StepFailed)
    assert failed.error == "no execute_transfer result within 30 s" and failed.on_failure == "retry"
    assert h.step(1).awaiting is Awaiting.RETRY and h.timers("payment_timeout") == []
    h.fire_due_timers(10_000)
    first, retry = h.orders_for(1)
    assert first.idempotency_key == retry.idempotency_key == "wfi_test:1:v1"  # one visit, one payment
    assert [e.attempt for e in h.events_of(ev.StepRequested)] == [1, 2]
    assert h.step(1).awaiting is Awaiting.PAYMENT


def test_the_answer_to_a_timed_out_attempt_is_the_steps_answer():
    """The service executed the visit's payment once under its key: a late answer is the payment's, not
    something to retry (a retry would be answered the same)."""
    h = run(action(retry_config={"max_retries": 2, "backoff_ms": 60_000}), NEXT)
    h.fire_due_timers(30_000)  # waiting to retry
    h.paid(1, "succeeded", {"payment_id": "p1"})
    assert h.step_status(1) is TaskStatus.COMPLETED and h.current_step == 2
    assert h.timers("retry") == []
    assert len(h.orders_for(1)) == 1  # never asked again


def test_a_copy_or_another_visits_answer_changes_nothing():
    h = run(action(), NEXT)
    h.paid(1, "succeeded", {"n": 1}, key="wfi_test:1:v2")
    assert h.last_rejection == "Expected the payment result of wfi_test:1:v1, but got the one of wfi_test:1:v2"
    h.paid(1, "succeeded", {"n": 1})
    before = h.state
    h.paid(1, "failed", error="late copy", key="wfi_test:1:v1")
    assert h.state.steps == before.steps and h.last.rejected


def test_a_handlers_report_for_an_ordered_payment_is_refused():
    h = run(action(), NEXT)
    h.succeed(1, {"forged": True}, attempt=1)
    assert "awaiting payment" in h.last_rejection
    assert h.step(1).awaiting is Awaiting.PAYMENT


def test_an_unknown_payment_status_is_rejected():
    h = run(action(), NEXT)
    h.paid(1, "exploded")
    assert h.last_rejection == "Expected payment status succeeded or failed, but got 'exploded'"


def test_success_completes_the_step_with_its_output():
    h = run(action(), NEXT)
    h.succeed(1, {"transfer_status": "completed"})
    assert h.step(1).output == {"transfer_status": "completed"}
    assert h.current_step == 2


def test_success_condition_false_counts_as_a_failed_attempt():
    h = run(action(success_condition="response.transfer_status == 'completed'", retry_config={"max_retries": 0}),
            NEXT)
    h.succeed(1, {"transfer_status": "pending"})
    assert h.status is WorkflowStatus.FAILED
    assert "success_condition" in h.step(1).error


def test_retries_with_backoff_are_timers_with_growing_delays_and_new_attempts():
    h = run(http(retry_config={"max_retries": 3, "backoff_ms": 1000}), NEXT)
    delays, keys = [], ["wfi_test:1:1"]
    for attempt in (1, 2, 3):
        h.fail(1, f"timeout {attempt}")
        [failed] = h.last_events
        assert isinstance(failed, ev.StepFailed) and failed.attempt == attempt and failed.on_failure == "retry"
        delays.append(failed.retry_at - h.now)
        assert h.step(1).awaiting is Awaiting.RETRY
        [timer] = h.timers("retry")
        assert timer.fire_at == failed.retry_at
        h.fire_due_timers(failed.retry_at - h.now)
        assert h.step(1).attempt == attempt + 1
        keys.append(h.requests_for(1)[-1].request_id)
    assert all(1000 * 2 ** i <= d <= 1200 * 2 ** i for i, d in enumerate(delays))
    assert keys == ["wfi_test:1:1", "wfi_test:1:2", "wfi_test:1:3", "wfi_test:1:4"]
    h.fail(1, "still down")
    assert h.status is WorkflowStatus.FAILED
    assert h.state.failure == "step 1 (Pay) failed: still down"


def test_a_non_retryable_failure_skips_the_retry_policy():
    h = run(action(), NEXT)
    h.fail(1, "insufficient funds", retryable=False)
    assert h.status is WorkflowStatus.FAILED
    assert h.timers() == []


def test_a_result_for_an_old_attempt_is_rejected():
    h = run(http(), NEXT)
    h.fail(1, "timeout")
    h.fire_due_timers(60_000)
    h.succeed(1, {"late": True}, attempt=1)
    assert h.last_rejection.startswith("Expected a result for step 1 attempt 2")
    assert h.step_status(1) is TaskStatus.IN_PROGRESS


def test_a_result_while_a_retry_is_scheduled_is_rejected():
    h = run(http(), NEXT)
    h.fail(1, "timeout")
    h.succeed(1, {}, attempt=1)
    assert "awaiting retry" in h.last_rejection


def test_an_unknown_outcome_is_rejected():
    h = run(http(), NEXT)
    h.result(1, "exploded")
    assert h.last_rejection == "Expected outcome succeeded or failed for an action step, but got 'exploded'"


def test_on_failure_skip_moves_on_after_a_final_failure():
    h = run(action(on_failure="skip", retry_config={"max_retries": 0}), NEXT)
    h.fail(1, "nope")
    assert h.step_status(1) is TaskStatus.SKIPPED
    assert h.current_step == 2


def test_on_failure_human_review_turns_the_step_into_an_approval():
    h = run(action(on_failure="human_review", retry_config={"max_retries": 0},
                   review_approvers={"type": "role", "value": "ops"}), NEXT)
    h.fail(1, "declined")
    assert h.step(1).awaiting is Awaiting.REVIEW
    assert h.requests_for(1, "approval")[0].request_id == "wfi_test:1:1:review"
    h.approve(1, human("o", "ops"))
    assert h.step_status(1) is TaskStatus.APPROVED
    assert h.current_step == 2


def test_retries_keep_the_payment_operation_key_so_a_slow_success_is_not_paid_twice():
    """On the handler's path too (a payment whose params need a handler)."""
    h = run(action(params={"transfer_id": "{{trigger.id}}", "memo": "{{secrets.memo}}"},
                   retry_config={"max_retries": 2, "backoff_ms": 1000}), NEXT)
    h.fail(1, "no execute_transfer result within 30 s")
    h.fire_due_timers(10_000)
    first, retry = h.requests_for(1)
    assert first.request_id != retry.request_id  # each attempt is its own step request ...
    assert first.config["operation_key"] == retry.config["operation_key"] == "wfi_test:1:v1"  # ... one payment


def test_a_loop_back_to_an_action_is_a_new_payment():
    loop = {"type": "condition", "name": "Again?", "config": {"expression": "steps.pay.n < 2",
                                                              "if_true": "skip_to:1", "if_false": "complete"}}
    h = run(action(), loop)
    h.succeed(1, {"n": 1})
    h.succeed(1, {"n": 2})
    keys = [o.idempotency_key for o in h.orders_for(1)]
    assert keys == ["wfi_test:1:v1", "wfi_test:1:v2"]
