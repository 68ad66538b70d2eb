"""Notification step: a signed webhook or an email, delivered by the notification handler.

The handler signs (`X-Flowline-Signature`), sends the idempotency key, and reports one attempt. Next: on
success, continue; on failure, the retry policy (default 5 retries) and then `on_failure` (default
`skip`: an undelivered notice should not undo an approved payment; set `fail_workflow` to be strict).
"""

from __future__ import annotations

from core import events as ev
from core.commands import ReportStepResult
from core.recorder import Recorder
from core.steps.failure import fail_attempt
from core.template import CompiledStep


def start(rec: Recorder, step: CompiledStep) -> None:
    config = rec.render(dict(step.spec.config))
    config.setdefault("channel", config.pop("type", "webhook"))
    rec.request(step, config)


def on_result(rec: Recorder, step: CompiledStep, result: ReportStepResult) -> None:
    if result.outcome == "succeeded":
        rec.emit(ev.StepSucceeded, step=step.spec.number, attempt=result.attempt, output=result.output)
    elif result.outcome == "failed":
        fail_attempt(rec, step, result.error or "delivery failed", retryable=result.retryable)
    else:
        rec.reject(f"Expected outcome succeeded or failed for a notification step, but got {result.outcome!r}")
