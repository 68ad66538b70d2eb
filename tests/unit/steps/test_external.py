"""External steps: sync and async HTTP calls, extract_fields, callbacks, retries and on_failure (story 29.13)."""

from __future__ import annotations

from core import events as ev
from core.types import Awaiting, TaskStatus, WorkflowStatus
from tests.unit.harness import HOUR, Harness, human, workflow


def external(**config) -> dict:
    config.setdefault("url", "https://erp.test/po/{{trigger.po}}")
    return {"type": "external", "id": "erp", "name": "Fetch PO", "config": config}


def condition(expression: str) -> dict:
    return {"type": "condition", "name": "Check", "config": {"expression": expression, "if_true": "complete",
                                                             "if_false": "fail"}}


NEXT = {"type": "notification", "name": "Next", "config": {"channel": "webhook", "url": "https://x.test/h"}}


def run(*steps) -> Harness:
    h = Harness(workflow(*steps))
    h.start({"po": "PO-7", "id": "tr_1"})
    return h


def test_request_renders_trigger_placeholders_and_leaves_secrets_untouched():
    h = run(external(headers={"Authorization": "Bearer {{secrets.erp_api_key}}"}), NEXT)
    [request] = h.requests_for(1)
    assert request.kind == "external"
    assert request.config == {"url": "https://erp.test/po/PO-7", "method": "GET", "timeout_seconds": 30,
                              "mode": "sync", "headers": {"Authorization": "Bearer {{secrets.erp_api_key}}"}}


def test_sync_success_extracts_fields_that_a_later_condition_reads():
    h = run(external(success_condition="response.status == 200",
                     extract_fields={"po_amount": "response.body.total_amount", "po_status": "response.body.status"}),
            condition("steps.erp.po_amount > 100 and steps.erp.po_status == 'open'"), NEXT)
    h.succeed(1, {"status": 200, "body": {"total_amount": 250, "status": "open"}})
    assert h.step(1).output == {"status": 200, "po_amount": 250, "po_status": "open"}
    assert h.status is WorkflowStatus.COMPLETED


def test_the_default_success_condition_is_a_2xx_status():
    h = run(external(retry_config={"max_retries": 0}), NEXT)
    h.succeed(1, {"status": 404, "body": {}})
    assert h.status is WorkflowStatus.FAILED
    assert "HTTP status 404" in h.state.failure


def test_a_4xx_response_is_not_retried_but_a_5xx_is():
    h = run(external(retry_config={"max_retries": 1, "backoff_ms": 1000}), NEXT)
    h.succeed(1, {"status": 503})
    assert h.step(1).awaiting is Awaiting.RETRY
    h.fire_due_timers(2000)
    h.succeed(1, {"status": 400})
    assert h.status is WorkflowStatus.FAILED


def test_transport_failures_are_retried_with_backoff_then_fail_the_workflow():
    h = run(external(retry_config={"max_retries": 2, "backoff_ms": 1000}), NEXT)
    retry_ats = []
    for _ in range(2):
        h.fail(1, "connection reset")
        retry_ats.append(h.last_events[0].retry_at - h.now)
        h.fire_due_timers(retry_ats[-1])
    assert retry_ats[0] < retry_ats[1]
    assert [r.request_id for r in h.requests_for(1)] == ["wfi_test:1:1", "wfi_test:1:2", "wfi_test:1:3"]
    h.fail(1, "connection reset")
    assert h.status is WorkflowStatus.FAILED


def test_async_accepted_then_complete_external_finishes_the_step():
    h = run(external(mode="async", method="POST", completion_timeout_hours=2), condition("steps.erp.risk < 0.5"),
            NEXT)
    h.accept(1, {"status": 202})
    assert h.step(1).awaiting is Awaiting.CALLBACK
    [timer] = h.timers("callback_timeout")
    assert timer.fire_at == h.now + 2 * HOUR
    h.callback(1, "completed", {"risk": 0.1})
    assert h.step(1).output == {"risk": 0.1}
    assert h.status is WorkflowStatus.COMPLETED


def test_a_callback_that_overtakes_the_handlers_report_completes_the_step():
    h = run(external(mode="async"), NEXT)
    h.callback(1, "completed", {"risk": 0.2})  # the external system answered before the handler reported
    assert h.step(1).output == {"risk": 0.2}
    assert h.current_step == 2
    h.accept(1, {"status": 202})  # the handler's report arrives late: stale, and it changes nothing
    assert h.last_rejection == "Expected a result for step 2, but got one for step 1"
    assert h.current_step == 2


def test_a_sync_step_takes_no_callback():
    h = run(external(), NEXT)
    h.callback(1, "completed", {})
    assert h.last_rejection == "Expected step 1 to await an external callback, but it awaits handler"


def test_a_callback_with_an_unknown_status_is_rejected():
    h = run(external(mode="async"), NEXT)
    h.accept(1)
    h.callback(1, "done", {})
    assert h.last_rejection == "Expected status 'completed' or 'failed', but got 'done'"


def test_a_failed_callback_applies_on_failure():
    h = run(external(mode="async", on_failure="skip"), NEXT)
    h.accept(1)
    h.callback(1, "failed", {"error": "sanctions hit"})
    assert h.step_status(1) is TaskStatus.SKIPPED
    assert "sanctions hit" in h.step(1).error
    assert h.current_step == 2


def test_callback_timeout_applies_on_failure():
    h = run(external(mode="async", completion_timeout_hours=1), NEXT)
    h.accept(1)
    h.fire_due_timers(HOUR)
    assert h.status is WorkflowStatus.FAILED
    assert "no completion callback within 1 hours" in h.state.failure


def test_async_extract_fields_read_the_callback_result_as_the_response_body():
    h = run(external(mode="async", extract_fields={"score": "response.body.risk_score"}), NEXT)
    h.accept(1)
    h.callback(1, "completed", {"risk_score": 0.7})
    assert h.step(1).output == {"status": 200, "score": 0.7}


def test_on_failure_skip_continues_after_the_retries_ran_out():
    h = run(external(on_failure="skip", retry_config={"max_retries": 1, "backoff_ms": 10}), NEXT)
    h.fail(1, "down")
    h.fire_due_timers(100)
    h.fail(1, "down")
    assert h.step_status(1) is TaskStatus.SKIPPED
    assert h.current_step == 2


def test_human_review_approve_continues():
    h = run(external(on_failure="human_review", retry_config={"max_retries": 0}), NEXT)
    h.fail(1, "down")
    assert h.step(1).awaiting is Awaiting.REVIEW
    assert h.step(1).approvers == {"type": "role", "value": "workflow_admin"}
    h.approve(1, human("admin", "workflow_admin"), "checked by hand")
    assert h.step_status(1) is TaskStatus.APPROVED
    assert h.current_step == 2


def test_human_review_reject_fails_the_instance():
    h = run(external(on_failure="human_review", retry_config={"max_retries": 0}), NEXT)
    h.fail(1, "down")
    h.reject(1, human("admin", "workflow_admin"))
    assert h.status is WorkflowStatus.FAILED


def test_human_review_times_out_as_a_rejection():
    h = run(external(on_failure="human_review", review_timeout_hours=1, retry_config={"max_retries": 0}), NEXT)
    h.fail(1, "down")
    h.fire_due_timers(HOUR)
    assert h.step_status(1) is TaskStatus.REJECTED
    assert h.status is WorkflowStatus.FAILED


def test_failure_notification_is_sent_as_a_side_request():
    h = run(external(retry_config={"max_retries": 0},
                     failure_notification={"type": "webhook", "url": "{{tenant.webhook_url}}"}), NEXT)
    h.fail(1, "down")
    [notice] = h.requests_for(1, "notification")
    assert notice.request_id == "wfi_test:1:1:failure-notice"
    assert notice.config == {"url": "{{tenant.webhook_url}}", "channel": "webhook",
                             "event": {"type": "step_failed", "step": 1, "name": "Fetch PO", "error": "down"}}
    assert h.status is WorkflowStatus.FAILED


def test_no_failure_notification_while_retries_remain():
    h = run(external(retry_config={"max_retries": 1},
                     failure_notification={"type": "webhook", "url": "https://x.test/f"}), NEXT)
    h.fail(1, "down")
    assert h.requests_for(1, "notification") == []


def test_extract_fields_that_fail_to_evaluate_fail_the_step_without_retry():
    h = run(external(extract_fields={"ratio": "response.body.a / response.body.b"}), NEXT)
    h.succeed(1, {"status": 200, "body": {"a": 1, "b": 0}})
    assert h.status is WorkflowStatus.FAILED
    assert "extract_fields failed" in h.state.failure
    assert not h.events_of(ev.StepFailed)[0].retry_at
