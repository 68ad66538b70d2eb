"""Validation vocabulary: a `Problem` (a JSON pointer and a sentence a partner can act on), the list that
collects them, and the checks more than one step type makes (expressions, positive numbers, approver
specs, the failure policy).

Template-level rules stay in `core/validation.py`; each step type's own rules are in its module
(`core/steps/<type>.py`, `validate`), built from these pieces, so a rule is written once.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from core.approvers import SPEC_TYPES, spec_list
from core.expressions import ExpressionError, compile_expression
from core.retry import ON_FAILURE_CHOICES

EVALUATION_FAILURE_CHOICES = ("fail_workflow", "skip")
RETRY_CONFIG_KEYS = ("max_retries", "backoff_ms", "max_backoff_ms")


@dataclass(frozen=True)
class Problem:
    pointer: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"pointer": self.pointer, "message": self.message}


class Problems:
    def __init__(self) -> None:
        self.items: list[Problem] = []

    def add(self, pointer: str, message: str) -> None:
        self.items.append(Problem(pointer, message))

    def unknown_keys(self, pointer: str, obj: Mapping[str, Any], allowed: Collection[str],
                     lead: str = "allowed:") -> None:
        """One problem per key of `obj` that is not in `allowed`, each at its own pointer."""
        for key in obj:
            if key not in allowed:
                self.add(f"{pointer}/{key}", f"unknown field {key!r}; {lead} {', '.join(sorted(allowed))}")


def check_expression(problems: Problems, pointer: str, source: Any, required: bool = True) -> None:
    if source is None and not required:
        return
    try:
        compile_expression(source)
    except ExpressionError as exc:
        problems.add(pointer, str(exc))


def positive_number(problems: Problems, pointer: str, value: Any, *, maximum: float | None = None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        problems.add(pointer, f"must be a positive number, got {value!r}")
    elif maximum is not None and value > maximum:
        problems.add(pointer, f"must be at most {maximum:g}, got {value!r}")


def check_evaluation_failure(problems: Problems, cp: str, config: Mapping[str, Any], step_type: str) -> None:
    """A condition or wait step whose expression fails to evaluate fails; `on_failure` says what then."""
    choice = config.get("on_failure")
    if choice is not None and choice not in EVALUATION_FAILURE_CHOICES:
        problems.add(f"{cp}/on_failure", f"a {step_type} step's on_failure "
                                         f"is one of {', '.join(EVALUATION_FAILURE_CHOICES)}")


def check_approvers(problems: Problems, pointer: str, approvers: Any) -> None:
    specs = spec_list(approvers)
    if not specs or (isinstance(approvers, list) and len(specs) != len(approvers)):
        problems.add(pointer, "approvers must be {type: role|user|agent, value: ...} or a list of them")
        return
    for i, spec in enumerate(specs):
        p = f"{pointer}/{i}" if isinstance(approvers, list) else pointer
        if spec.get("type") not in SPEC_TYPES:
            problems.add(f"{p}/type", f"approver type {spec.get('type')!r} is not one of {', '.join(SPEC_TYPES)}")
        value = spec.get("value")
        if not value or not (isinstance(value, str) or (isinstance(value, list) and all(
                isinstance(v, str) and v for v in value))):
            problems.add(f"{p}/value", "approver value must be a non-empty id, role, or list of ids")


def check_failure_policy(problems: Problems, cp: str, config: Mapping[str, Any]) -> None:
    """The failure policy of a step that does I/O (action, notification, external): retries, then on_failure."""
    retry = config.get("retry_config")
    if retry is not None:
        if not isinstance(retry, Mapping):
            problems.add(f"{cp}/retry_config", "retry_config must be {max_retries, backoff_ms}")
        else:
            max_retries = retry.get("max_retries", 0)
            if not isinstance(max_retries, int) or isinstance(max_retries, bool) or not 0 <= max_retries <= 20:
                problems.add(f"{cp}/retry_config/max_retries", "max_retries must be a whole number from 0 to 20")
            backoff = retry.get("backoff_ms", 1000)
            if not isinstance(backoff, int) or isinstance(backoff, bool) or not 1 <= backoff <= 86_400_000:
                problems.add(f"{cp}/retry_config/backoff_ms", "backoff_ms must be milliseconds from 1 to 86400000")
            for key in retry:
                if key not in RETRY_CONFIG_KEYS:
                    problems.add(f"{cp}/retry_config/{key}", f"unknown retry_config field {key!r}")
    choice = config.get("on_failure")
    if choice is not None and choice not in ON_FAILURE_CHOICES:
        problems.add(f"{cp}/on_failure", f"on_failure {choice!r} is not one of {', '.join(ON_FAILURE_CHOICES)}")
    if choice == "human_review" and "review_approvers" in config:
        check_approvers(problems, f"{cp}/review_approvers", config["review_approvers"])
    notice = config.get("failure_notification")
    if notice is not None:
        if not isinstance(notice, Mapping):
            problems.add(f"{cp}/failure_notification", "failure_notification must be an object {type, url|to}")
        else:
            channel = notice.get("type", notice.get("channel", "webhook"))
            if channel == "webhook" and not notice.get("url"):
                problems.add(f"{cp}/failure_notification/url", "a webhook failure_notification needs a url")
            if channel == "email" and not notice.get("to"):
                problems.add(f"{cp}/failure_notification/to", "an email failure_notification needs to")
    positive_number(problems, f"{cp}/timeout_seconds", config.get("timeout_seconds"), maximum=300)
