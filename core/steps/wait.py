"""Wait step: pause until a time, for a duration, or until a condition holds (story 29.7).

Config, one of: `until` (ISO 8601 time, epoch milliseconds, or a placeholder such as
`{{trigger.execute_at}}`), `duration_seconds` / `duration_minutes` / `duration_hours`, or `condition`
(an expression, re-checked every `poll_interval_seconds`, default 60, at least 1, and on every `advance`),
with an optional `timeout_hours` after which `on_timeout` applies (`fail`, default, or `continue`). All
waiting is durable timers in the instance state; nothing sleeps. A condition that fails to evaluate fails
the step (its `on_failure`: `fail_workflow` or `skip`) instead of being polled forever as "not yet".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from core import events as ev
from core.expressions import ExpressionError
from core.problems import (
    EVALUATION_FAILURE_CHOICES,
    Problems,
    check_evaluation_failure,
    check_expression,
    positive_number,
)
from core.recorder import Recorder
from core.state import Timer
from core.steps.failure import fail_attempt
from core.steps.kind import EXPRESSION, StepKind, config_schema, expressions_at, positive
from core.timers import (
    MS_PER_HOUR,
    MS_PER_MINUTE,
    MS_PER_SECOND,
    TimerPurpose,
    hours_to_ms,
    parse_time_ms,
    seconds_to_ms,
    to_ms,
)
from core.types import Awaiting, StepType, TaskStatus

if TYPE_CHECKING:
    from core.template import CompiledStep

DEFAULT_POLL_SECONDS = 60
MIN_POLL_SECONDS = 1  # validation refuses less; templates stored before that rule are held to it here
DURATION_UNITS_MS = {"duration_seconds": MS_PER_SECOND, "duration_minutes": MS_PER_MINUTE,
                     "duration_hours": MS_PER_HOUR}
MODES = ("until", *DURATION_UNITS_MS, "condition")
ON_TIMEOUT_CHOICES = ("fail", "continue")

CONFIG_SCHEMA = config_schema(
    StepType.WAIT,
    "Pause until a time, for a duration, or until a condition holds: exactly one of until, duration_seconds, "
    "duration_minutes, duration_hours, condition.",
    {
        "until": {"oneOf": [{"type": "string"}, {"type": "number"}],
                  "description": "an ISO 8601 time, epoch milliseconds, or a placeholder",
                  "examples": ["{{trigger.execute_at}}", "2026-01-01T09:00:00Z"]},
        "duration_seconds": positive("wait this many seconds"),
        "duration_minutes": positive("wait this many minutes"),
        "duration_hours": positive("wait this many hours"),
        "condition": {**EXPRESSION, "description": "wait until this holds (re-checked every poll and on advance)",
                      "examples": ["steps.lookup.status == 'settled'"]},
        "poll_interval_seconds": {**positive("condition: how often it is re-checked", default=DEFAULT_POLL_SECONDS),
                                  "minimum": MIN_POLL_SECONDS},
        "timeout_hours": positive("give up after this long; then on_timeout applies"),
        "on_timeout": {"enum": list(ON_TIMEOUT_CHOICES), "default": "fail"},
        "on_failure": {"enum": list(EVALUATION_FAILURE_CHOICES), "default": "fail_workflow",
                       "description": "when the condition fails to evaluate: fail the instance or skip the step"},
    },
    example={"duration_hours": 24},
    oneOf=[{"required": [mode]} for mode in MODES],
)


def validate(problems: Problems, cp: str, config: Mapping[str, Any], actions: set[str]) -> None:
    modes = [k for k in MODES if k in config]
    if len(modes) != 1:
        problems.add(cp, "a wait step needs exactly one of until, duration_seconds, duration_minutes, "
                         f"duration_hours, condition (got {', '.join(modes) or 'none'})")
        return
    mode = modes[0]
    if mode == "condition":
        check_expression(problems, f"{cp}/condition", config["condition"])
        poll = config.get("poll_interval_seconds")
        positive_number(problems, f"{cp}/poll_interval_seconds", poll)
        if isinstance(poll, int | float) and not isinstance(poll, bool) and 0 < poll < MIN_POLL_SECONDS:
            problems.add(f"{cp}/poll_interval_seconds", f"poll_interval_seconds must be at least {MIN_POLL_SECONDS} "
                                                         "(a tighter poll re-evaluates for every tenant's cost)")
        check_evaluation_failure(problems, cp, config, "wait")
    elif mode == "until":
        until = config["until"]
        if not (isinstance(until, str) and "{{" in until) and parse_time_ms(until) is None:
            problems.add(f"{cp}/until", "until must be an ISO 8601 time, epoch milliseconds, or a placeholder")
    else:
        positive_number(problems, f"{cp}/{mode}", config[mode])
    positive_number(problems, f"{cp}/timeout_hours", config.get("timeout_hours"))
    if config.get("on_timeout", "fail") not in ON_TIMEOUT_CHOICES:
        problems.add(f"{cp}/on_timeout", "a wait's on_timeout is fail or continue")


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
                 poll_at=rec.now + poll, deadline=rec.now + hours_to_ms(hours) if hours else 0)
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
            return rec.now + to_ms(config[key], unit)
    return parse_time_ms(rec.render(config.get("until")))


def _poll_ms(step: CompiledStep) -> int:
    seconds = float(step.spec.config.get("poll_interval_seconds", DEFAULT_POLL_SECONDS))
    return seconds_to_ms(max(seconds, MIN_POLL_SECONDS))


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
    if timer.purpose == TimerPurpose.WAIT_UNTIL:
        rec.emit(ev.StepSucceeded, step=number, attempt=state.attempt, output={"waited_ms": rec.now - state.started_at})
    elif timer.purpose == TimerPurpose.WAIT_POLL:
        holds = _condition_holds(rec, step)
        if holds:
            rec.emit(ev.StepSucceeded, step=number, attempt=state.attempt,
                     output={"waited_ms": rec.now - state.started_at})
        elif holds is not None:
            rec.emit(ev.WaitPolled, step=number, attempt=state.attempt, poll_at=rec.now + _poll_ms(step))
    elif timer.purpose == TimerPurpose.WAIT_TIMEOUT:
        action = step.on_timeout.action
        rec.emit(ev.StepTimedOut, step=number, attempt=state.attempt, action=action, timer_id=timer.timer_id)


def ready(rec: Recorder, step: CompiledStep) -> bool:
    """For `advance`: is the wait over now?"""
    config = step.spec.config
    if "condition" in config:
        return _condition_holds(rec, step) is not False  # a failure was emitted: the caller must not wait on
    until = next((t.fire_at for t in rec.instance.timers
                  if t.step == step.spec.number and t.purpose == TimerPurpose.WAIT_UNTIL), None)
    return until is not None and until <= rec.now


def finish_early(rec: Recorder, step: CompiledStep) -> None:
    state = rec.step_state(step.spec.number)
    if state.status is not TaskStatus.IN_PROGRESS or state.awaiting is Awaiting.NOTHING:
        return  # `ready` failed the step (the condition did not evaluate): nothing to finish
    rec.emit(ev.StepSucceeded, step=step.spec.number, attempt=state.attempt,
             output={"waited_ms": rec.now - state.started_at})


def on_advance(rec: Recorder, step: CompiledStep) -> bool:
    """An `advance` on a waiting step: finish it if the wait is over. True if the step was dealt with."""
    if rec.step_state(step.spec.number).status is not TaskStatus.IN_PROGRESS or not ready(rec, step):
        return False
    finish_early(rec, step)
    return True


KIND = StepKind(
    type=StepType.WAIT,
    summary="pause until a time, for a duration, or until a condition holds",
    config_schema=CONFIG_SCHEMA,
    validate=validate,
    start=start,
    on_timer=on_timer,
    on_advance=on_advance,
    timers=(TimerPurpose.WAIT_UNTIL, TimerPurpose.WAIT_POLL, TimerPurpose.WAIT_TIMEOUT),
    expressions=expressions_at("condition"),
)
