"""What happens when an attempt of an action, notification or external step fails.

First the retry policy: a retryable failure within `retry_config.max_retries` schedules the next attempt
as a durable timer (never a sleep in a handler). Then `on_failure`: `retry` or `fail_workflow` fail the
instance, `skip` moves on, `human_review` turns the step into an approval. A `failure_notification`, if
configured, is sent in every final case.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import core.steps as registry  # read at call time: the registry lists the modules that import this one
from core import events as ev
from core.recorder import Recorder
from core.retry import on_failure, retry_policy
from core.timers import hours_to_ms

if TYPE_CHECKING:
    from core.commands import ReportStepResult
    from core.template import CompiledStep

DEFAULT_REVIEWERS = {"type": "role", "value": "workflow_admin"}
DEFAULT_REVIEW_TIMEOUT_HOURS = 72


def fail_attempt(rec: Recorder, step: CompiledStep, error: str, *, retryable: bool) -> None:
    spec = step.spec
    state = rec.step_state(spec.number)
    kind = registry.kind_of(spec.type)
    policy = retry_policy(dict(spec.config), kind.max_retries)
    choice = on_failure(dict(spec.config), kind.on_failure)
    if retryable and state.retries < policy.max_retries:
        delay = policy.delay_ms(state.retries + 1, f"{rec.instance.instance_id}:{spec.number}:{state.attempt}")
        rec.emit(ev.StepFailed, step=spec.number, attempt=state.attempt, error=error, retry_at=rec.now + delay,
                 on_failure="retry")
        return
    rec.emit(ev.StepFailed, step=spec.number, attempt=state.attempt, error=error, on_failure=choice)
    _notify_failure(rec, step, error)
    if choice == "skip":
        rec.emit(ev.StepSkipped, step=spec.number, reason=f"failed and on_failure is skip: {error}")
    elif choice == "human_review":
        hours = spec.config.get("review_timeout_hours", DEFAULT_REVIEW_TIMEOUT_HOURS)
        rec.emit(ev.HumanReviewRequested, step=spec.number, attempt=state.attempt,
                 approvers=spec.config.get("review_approvers") or DEFAULT_REVIEWERS, error=error,
                 deadline=rec.now + hours_to_ms(hours))
        rec.request(step, {"review": True, "approvers": rec.step_state(spec.number).approvers, "error": error,
                           "level": "SINGLE"}, key_suffix=":review", kind="approval")


def succeeded_or_failed(rec: Recorder, step: CompiledStep, result: ReportStepResult, *, failed: str,
                        holds: Callable[[], bool] | None = None) -> None:
    """A handler's report for a step that either succeeds or fails (action, notification).

    `holds`, for a success, may find that it is not one after all (an action's `success_condition`): it
    fails the attempt itself and returns False. `failed` is the error when a failure report names none.
    """
    if result.outcome == "succeeded":
        if holds is None or holds():
            rec.emit(ev.StepSucceeded, step=step.spec.number, attempt=result.attempt, output=result.output)
    elif result.outcome == "failed":
        fail_attempt(rec, step, result.error or failed, retryable=result.retryable)
    else:
        article = "an" if step.spec.type.value[0] in "aeiou" else "a"
        rec.reject(f"Expected outcome succeeded or failed for {article} {step.spec.type.value} step, but got "
                   f"{result.outcome!r}")


def _notify_failure(rec: Recorder, step: CompiledStep, error: str) -> None:
    notification = step.spec.config.get("failure_notification")
    if not notification:
        return
    config = dict(rec.render(notification))
    config.setdefault("channel", config.pop("type", "webhook"))
    config["event"] = {"type": "step_failed", "step": step.spec.number, "name": step.spec.name, "error": error}
    rec.request(step, config, key_suffix=":failure-notice", kind="notification")
