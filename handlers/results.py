"""The `ReportStepResult` a handler publishes for one attempt: command id `result:<request id>`, so a
redelivered request yields the very same command and the engine drops the copy."""

from __future__ import annotations

import time
from typing import Any

from core.commands import ReportStepResult
from core.effects import StepRequest, idempotency_key


def _result(request: StepRequest, outcome: str, output: Any = None, error: str = "",
            retryable: bool = True) -> ReportStepResult:
    return ReportStepResult(command_id=f"result:{request.request_id}", instance_id=request.instance_id,
                            issued_at=int(time.time() * 1000), step=request.step, attempt=request.attempt,
                            outcome=outcome, output=output, error=error, retryable=retryable)


def succeeded(request: StepRequest, output: Any = None) -> ReportStepResult:
    return _result(request, "succeeded", output)


def accepted(request: StepRequest, output: Any = None) -> ReportStepResult:
    """An async external call was taken on; the step now waits for its callback."""
    return _result(request, "accepted", output)


def failed(request: StepRequest, error: str, *, retryable: bool) -> ReportStepResult:
    return _result(request, "failed", None, error, retryable)


def is_side_request(request: StepRequest) -> bool:
    """A failure notice, escalation notice or review request: the step does not wait for its result.

    Its id carries a suffix after `instance:step:attempt`; reporting a result for it would only earn a
    CommandRejected from the engine.
    """
    return request.request_id != idempotency_key(request.instance_id, request.step, request.attempt)
