"""Wait step: pause until a time, for a duration, or until a condition holds (story 29.7).

Config, one of: `until` (ISO 8601 time, epoch milliseconds, or a placeholder such as
`{{trigger.execute_at}}`), `duration_seconds` / `duration_minutes` / `duration_hours`, or `condition`
(an expression, re-checked every `poll_interval_seconds`, default 60, at least 1, and on every `advance`),
with an optional `timeout_hours` after which `on_timeout` applies (`fail`, default, or `continue`). All
waiting is durable timers in the instance state; nothing sleeps. A condition that fails to evaluate fails
the step (its `on_failure`: `fail_workflow` or `skip`) instead of being polled forever as "not yet".
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from core import events as ev
from core.expressions import ExpressionError
from core.recorder import Recorder
from core.state import Timer
from core.steps.failure import fail_attempt
from core.template import CompiledStep
from core.types import Awaiting, TaskStatus

DEFAULT_POLL_SECONDS = 60
MIN_POLL_SECONDS = 1  # validation refuses less; templates stored before that rule are held to it here
DURATION_UNITS_MS = {"duration_seconds": 1000, "duration_minutes": 60_000, "duration_hours": 3_600_000}


def parse_time_ms(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, str) and value.strip():
        text = value.strip().replace("Z", "+00:00")
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return int(moment.timestamp() * 1000)
    return None


def start(rec: Recorder, step: CompiledStep) -> None:
    config = step.spec.config
    number = step.spec.number
    attempt = rec.step_state(number).attempt
    if "condition" in config:
        holds = _condition_holds(rec, step)
        if holds is None:
            return
        if holds:
            rec.emit(ev.StepSucceeded, step=number, attempt=attempt, output={"waited_ms": 0})
            return
        poll = _poll_ms(step)
        hours = config.get("timeout_hours")
        rec.emit(ev.WaitStarted, step=number, attempt=attempt, condition=str(config["condition"]),
                 poll_at=rec.now + poll, deadline=rec.now + int(float(hours) * 3_600_000) if hours else 0)
        return
    until = _until(rec, step)
    if until is None:
        rec.emit(ev.StepFailed, step=number, attempt=attempt, error=f"wait time {config.get('until')!r} is not a time")
        return
    if until <= rec.now:
        rec.emit(ev.StepSucceeded, step=number, attempt=attempt, output={"waited_ms": 0})
        return
    rec.emit(ev.WaitStarted, step=number, attempt=attempt, until=until)


def _until(rec: Recorder, step: CompiledStep) -> int | None:
    config = step.spec.config
    for key, unit in DURATION_UNITS_MS.items():
        if key in config:
            return rec.now + int(float(config[key]) * unit)
    return parse_time_ms(rec.render(config.get("until")))


def _poll_ms(step: CompiledStep) -> int:
    seconds = float(step.spec.config.get("poll_interval_seconds", DEFAULT_POLL_SECONDS))
    return int(max(seconds, MIN_POLL_SECONDS) * 1000)


def _condition_holds(rec: Recorder, step: CompiledStep) -> bool | None:
    """Whether the condition holds; None when it failed to evaluate (the step's failure is emitted)."""
    try:
        return step.expressions["condition"].test(rec.names())
    except ExpressionError as exc:
        fail_attempt(rec, step, f"wait condition failed to evaluate: {exc}", retryable=False)
        return None


def on_timer(rec: Recorder, step: CompiledStep, timer: Timer) -> None:
    number = step.spec.number
    state = rec.step_state(number)
    if timer.purpose == "wait_until":
        rec.emit(ev.StepSucceeded, step=number, attempt=state.attempt, output={"waited_ms": rec.now - state.started_at})
    elif timer.purpose == "wait_poll":
        holds = _condition_holds(rec, step)
        if holds:
            rec.emit(ev.StepSucceeded, step=number, attempt=state.attempt,
                     output={"waited_ms": rec.now - state.started_at})
        elif holds is not None:
            rec.emit(ev.WaitPolled, step=number, attempt=state.attempt, poll_at=rec.now + _poll_ms(step))
    elif timer.purpose == "wait_timeout":
        action = str(step.spec.config.get("on_timeout", "fail"))
        rec.emit(ev.StepTimedOut, step=number, attempt=state.attempt, action=action, timer_id=timer.timer_id)


def ready(rec: Recorder, step: CompiledStep) -> bool:
    """For `advance`: is the wait over now?"""
    config = step.spec.config
    if "condition" in config:
        return _condition_holds(rec, step) is not False  # a failure was emitted: the caller must not wait on
    until = next((t.fire_at for t in rec.instance.timers if t.step == step.spec.number and t.purpose == "wait_until"),
                 None)
    return until is not None and until <= rec.now


def finish_early(rec: Recorder, step: CompiledStep) -> None:
    state = rec.step_state(step.spec.number)
    if state.status is not TaskStatus.IN_PROGRESS or state.awaiting is Awaiting.NOTHING:
        return  # `ready` failed the step (the condition did not evaluate): nothing to finish
    rec.emit(ev.StepSucceeded, step=step.spec.number, attempt=state.attempt,
             output={"waited_ms": rec.now - state.started_at})
