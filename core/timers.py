"""Timer vocabulary: what a durable timer is for, how long a configured duration is, what a timeout does.

Timers live in the instance state as plain strings (`Timer.purpose`), so `TimerPurpose` is a `StrEnum`
whose values are exactly the strings recorded logs and stored states already carry: an enum member equals
its string, and a decoded state compares equal without conversion. Which step type handles a purpose is
declared by the step types themselves (`StepKind.timers`), and `core.steps.timer_owner` looks it up.

`OnTimeout` is the one parser of a step's `on_timeout` (a word such as `fail`, or the escalation object
`{"action": "escalate", "approvers": ..., "timeout_hours": ..., "then": ..., "max_escalations": ...}`);
templates are compiled with it once per version (`CompiledStep.on_timeout`), and validation reads the same
parse, so the engine and the editor never disagree on what a timeout does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

MS_PER_SECOND = 1000
MS_PER_MINUTE = 60_000
MS_PER_HOUR = 3_600_000
DEFAULT_MAX_ESCALATIONS = 1


class TimerPurpose(StrEnum):
    RETRY = "retry"
    APPROVAL_TIMEOUT = "approval_timeout"
    REVIEW_TIMEOUT = "review_timeout"
    WAIT_UNTIL = "wait_until"
    WAIT_POLL = "wait_poll"
    WAIT_TIMEOUT = "wait_timeout"
    CALLBACK_TIMEOUT = "callback_timeout"
    PAYMENT_TIMEOUT = "payment_timeout"  # an action step's payment order unanswered (docs/adr/0023)
    # a state-machine transition with a time (`after_hours`, `at`, ...): armed on entering its source state,
    # owned by the machine loop (core/machine_run.py), not by a step type; its timer has step 0
    TRANSITION_DUE = "transition_due"


def to_ms(amount: Any, unit_ms: int) -> int:
    """A configured duration (`timeout_hours: 1.5`, `duration_seconds: "30"`) in milliseconds; 0 when unset.

    Every duration in a template is a number of hours, minutes or seconds, possibly fractional or a
    numeric string; the engine's clock is epoch milliseconds. One conversion, so a timer never rounds
    differently in two places.
    """
    return int(float(amount) * unit_ms) if amount else 0


def hours_to_ms(hours: Any) -> int:
    return to_ms(hours, MS_PER_HOUR)


def seconds_to_ms(seconds: Any) -> int:
    return to_ms(seconds, MS_PER_SECOND)


def parse_time_ms(value: Any) -> int | None:
    """A point in time (ISO 8601, naive = UTC, or epoch milliseconds) in epoch ms; None if it is not one.
    The one parser for a wait step's `until` and a state-machine transition's `at`."""
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


@dataclass(frozen=True)
class OnTimeout:
    """A parsed `on_timeout`: `action`, and for an escalation where to, for how long, how often, then what."""

    action: str = "fail"
    approvers: Any = None
    timeout_hours: Any = None
    then: str = "fail"
    max_escalations: int = DEFAULT_MAX_ESCALATIONS

    @classmethod
    def parse(cls, raw: Any) -> OnTimeout:
        if isinstance(raw, dict):
            try:
                max_escalations = int(raw.get("max_escalations", DEFAULT_MAX_ESCALATIONS))
            except (TypeError, ValueError):
                max_escalations = DEFAULT_MAX_ESCALATIONS
            return cls(action=str(raw.get("action", "escalate")), approvers=raw.get("approvers") or None,
                       timeout_hours=raw.get("timeout_hours"), then=str(raw.get("then", "fail")),
                       max_escalations=max_escalations)
        return cls(action=str(raw or "fail"))

    @property
    def final_action(self) -> str:
        """What a timeout finally does: the action itself, or an escalation's `then` once escalations ran out."""
        return self.then if self.action == "escalate" else self.action


NO_TIMEOUT = OnTimeout()
