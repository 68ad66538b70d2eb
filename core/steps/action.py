"""Action step: run a PayOS operation (`execute_transfer`, `simulate_transfer`, ...) through the action
handler, which owns the adapter registry and the payment service's idempotency.

Next: a `succeeded` result completes the step (its output is `steps.<key>.*`; an optional
`success_condition` over `response` = the output must hold); `failed` goes to the retry policy and
`on_failure` (default `fail_workflow`).
"""

from __future__ import annotations

from core import events as ev
from core.commands import ReportStepResult
from core.expressions import ExpressionError
from core.recorder import Recorder
from core.steps.failure import fail_attempt
from core.template import CompiledStep


def operation_key(rec: Recorder, step: CompiledStep) -> str:
    """The payment's idempotency key: the same for every retry of one visit to the step.

    A retry after a timeout must not pay twice if the first attempt did reach the payment service, so
    the key names the visit (`instance:step:v<first attempt>`), not the attempt; a loop that comes back
    to the step is a new visit, and a new payment.
    """
    state = rec.step_state(step.spec.number)
    return f"{rec.instance.instance_id}:{step.spec.number}:v{state.attempt - state.retries}"


def start(rec: Recorder, step: CompiledStep) -> None:
    config = dict(step.spec.config)
    rec.request(step, {"action": config.get("action"), "params": rec.render(config.get("params") or {}),
                       "timeout_seconds": config.get("timeout_seconds", 30),
                       "operation_key": operation_key(rec, step)})


def on_result(rec: Recorder, step: CompiledStep, result: ReportStepResult) -> None:
    if result.outcome == "succeeded":
        condition = step.expressions.get("success_condition")
        if condition is not None:
            try:
                ok = condition.test({**rec.names(), "response": result.output})
            except ExpressionError as exc:
                fail_attempt(rec, step, str(exc), retryable=False)
                return
            if not ok:
                fail_attempt(rec, step, f"success_condition {condition.source!r} is false", retryable=True)
                return
        rec.emit(ev.StepSucceeded, step=step.spec.number, attempt=result.attempt, output=result.output)
    elif result.outcome == "failed":
        fail_attempt(rec, step, result.error or "failed", retryable=result.retryable)
    else:
        rec.reject(f"Expected outcome succeeded or failed for an action step, but got {result.outcome!r}")
