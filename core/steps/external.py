"""External step: call an ERP, CRM or any HTTP API (story 29.13).

The external handler renders `{{secrets.*}}`, makes one HTTP attempt and reports the response
(`status`, `headers`, `body`) or a transport failure. This module judges the response, so the rules live
in one deterministic place: `success_condition` (default: a 2xx status) over `response`, then
`extract_fields` (`po_amount: response.body.total_amount`) become `steps.<key>.<field>` for later steps.

Sync mode: a good response completes the step. Async mode: a good response means the external system
accepted the work; the step then waits for `complete-external` (verified by the gateway) until
`completion_timeout_hours` (default 24), a durable timer. Failures: the retry policy with
`retry_config` (`max_retries`, `backoff_ms`) as durable timers, then `on_failure`: `retry` /
`fail_workflow`, `skip`, or `human_review`.
"""

from __future__ import annotations

from typing import Any

from core import events as ev
from core.commands import CompleteExternal, ReportStepResult
from core.expressions import ExpressionError, compile_expression
from core.recorder import Recorder
from core.state import Timer
from core.steps.failure import fail_attempt
from core.template import CompiledStep

DEFAULT_SUCCESS = compile_expression("response.status >= 200 and response.status < 300")
DEFAULT_COMPLETION_TIMEOUT_HOURS = 24
REQUEST_KEYS = ("url", "method", "headers", "body", "query", "timeout_seconds", "mode")


def is_async(step: CompiledStep) -> bool:
    return str(step.spec.config.get("mode", "sync")).lower() == "async"


def start(rec: Recorder, step: CompiledStep) -> None:
    config = step.spec.config
    request: dict[str, Any] = {key: config[key] for key in REQUEST_KEYS if key in config}
    request.setdefault("method", "GET")
    request.setdefault("timeout_seconds", 30)
    request.setdefault("mode", "sync")
    rec.request(step, rec.render(request))


def on_result(rec: Recorder, step: CompiledStep, result: ReportStepResult) -> None:
    if result.outcome == "failed":
        fail_attempt(rec, step, result.error or "request failed", retryable=result.retryable)
        return
    if result.outcome not in ("succeeded", "accepted"):
        rec.reject(f"Expected outcome succeeded, accepted or failed for an external step, got {result.outcome!r}")
        return
    response = result.output if isinstance(result.output, dict) else {}
    names = {**rec.names(), "response": response}
    condition = step.expressions.get("success_condition", DEFAULT_SUCCESS)
    try:
        ok = condition.test(names)
    except ExpressionError as exc:
        fail_attempt(rec, step, str(exc), retryable=False)
        return
    if not ok:
        status = response.get("status")
        fail_attempt(rec, step, f"success_condition {condition.source!r} is false (HTTP status {status})",
                     retryable=_retryable_status(status))
        return
    if is_async(step):
        hours = float(step.spec.config.get("completion_timeout_hours", DEFAULT_COMPLETION_TIMEOUT_HOURS))
        rec.emit(ev.ExternalCallAccepted, step=step.spec.number, attempt=result.attempt,
                 deadline=rec.now + int(hours * 3_600_000))
        return
    try:
        output = extract(step, names)
    except ExpressionError as exc:
        fail_attempt(rec, step, f"extract_fields failed: {exc}", retryable=False)
        return
    rec.emit(ev.StepSucceeded, step=step.spec.number, attempt=result.attempt, output=output)


def on_callback(rec: Recorder, step: CompiledStep, callback: CompleteExternal) -> None:
    attempt = rec.step_state(step.spec.number).attempt
    if callback.status == "completed":
        names = {**rec.names(), "response": {"status": 200, "body": callback.result}}
        try:
            output = extract(step, names) if step.spec.config.get("extract_fields") else callback.result
        except ExpressionError as exc:
            fail_attempt(rec, step, f"extract_fields failed: {exc}", retryable=False)
            return
        rec.emit(ev.StepSucceeded, step=step.spec.number, attempt=attempt, output=output)
    else:
        detail = callback.result.get("error") if isinstance(callback.result, dict) else None
        fail_attempt(rec, step, f"external system reported failure{': ' + str(detail) if detail else ''}",
                     retryable=False)


def on_timer(rec: Recorder, step: CompiledStep, timer: Timer) -> None:
    hours = step.spec.config.get("completion_timeout_hours", DEFAULT_COMPLETION_TIMEOUT_HOURS)
    fail_attempt(rec, step, f"no completion callback within {hours} hours", retryable=False)


def extract(step: CompiledStep, names: dict[str, Any]) -> dict[str, Any]:
    response = names.get("response") or {}
    output: dict[str, Any] = {"status": response.get("status")}
    for name in step.spec.config.get("extract_fields") or {}:
        output[name] = step.expressions[f"extract_fields.{name}"].evaluate(names)
    return output


def _retryable_status(status: Any) -> bool:
    """5xx, 408 and 429 are worth retrying; other 4xx will fail the same way again."""
    return not isinstance(status, int) or status >= 500 or status in (408, 429)
