"""Notification steps: a webhook or an email through the notification handler (story 29.6)."""

from __future__ import annotations

from core.types import TaskStatus, WorkflowStatus
from tests.unit.harness import Harness, workflow

LAST = {"type": "approval", "name": "Last", "config": {"level": "AUTO"}}


def notification(**config) -> dict:
    return {"type": "notification", "name": "Notify", "config": config}


def run(*steps) -> Harness:
    h = Harness(workflow(*steps))
    h.start({"id": "tr_1", "email": "a@x.test", "amount": 12})
    return h


def test_webhook_request_renders_trigger_placeholders_and_leaves_tenant_ones_for_the_handler():
    h = run(notification(type="webhook", url="{{tenant.webhook_url}}",
                         body={"transfer": "{{trigger.id}}", "amount": "{{trigger.amount}}",
                               "text": "amount {{trigger.amount}} for {{instance.id}}"}), LAST)
    [request] = h.requests_for(1)
    assert request.kind == "notification"
    assert request.config == {"channel": "webhook", "url": "{{tenant.webhook_url}}",
                              "body": {"transfer": "tr_1", "amount": 12, "text": "amount 12 for wfi_test"}}


def test_email_request():
    h = run(notification(channel="email", to="{{trigger.email}}", subject="Hi"), LAST)
    assert h.requests_for(1)[0].config == {"channel": "email", "to": "a@x.test", "subject": "Hi"}


def test_delivery_success_continues():
    h = run(notification(url="https://x.test/h"), LAST)
    h.succeed(1, {"status": 200})
    assert h.status is WorkflowStatus.COMPLETED


def test_notification_is_retried_then_skipped_by_default():
    h = run(notification(url="https://x.test/h"), LAST)
    for _ in range(5):
        h.fail(1, "503")
        assert h.step_status(1) is TaskStatus.IN_PROGRESS
        h.fire_due_timers(10 * 3_600_000)
    assert h.step(1).attempt == 6
    h.fail(1, "503")
    assert h.step_status(1) is TaskStatus.SKIPPED
    assert h.status is WorkflowStatus.COMPLETED


def test_notification_on_failure_skip_moves_on_after_a_non_retryable_failure():
    h = run(notification(url="https://x.test/h"), LAST)
    h.fail(1, "410 gone", retryable=False)
    assert h.step_status(1) is TaskStatus.SKIPPED
    assert h.status is WorkflowStatus.COMPLETED


def test_strict_notification_fails_the_workflow():
    h = run(notification(url="https://x.test/h", on_failure="fail_workflow", retry_config={"max_retries": 0}), LAST)
    h.fail(1, "503")
    assert h.status is WorkflowStatus.FAILED
