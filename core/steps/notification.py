"""Notification step: a signed webhook or an email, delivered by the notification handler.

The handler signs (`X-Flowline-Signature`), sends the idempotency key, and reports one attempt. Next: on
success, continue; on failure, the retry policy (default 5 retries) and then `on_failure` (default
`skip`: an undelivered notice should not undo an approved payment; set `fail_workflow` to be strict).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from core.commands import ReportStepResult
from core.problems import Problems, check_failure_policy
from core.recorder import Recorder
from core.steps.failure import succeeded_or_failed
from core.steps.kind import StepKind, config_schema, failure_policy_properties
from core.types import StepType

if TYPE_CHECKING:
    from core.template import CompiledStep

DEFAULT_MAX_RETRIES = 5
DEFAULT_ON_FAILURE = "skip"
CHANNELS = ("webhook", "email")

CONFIG_SCHEMA = config_schema(
    StepType.NOTIFICATION,
    "A signed webhook or an email, delivered by the notification handler.",
    {
        "channel": {"enum": list(CHANNELS), "default": "webhook"},
        "type": {"enum": list(CHANNELS), "description": "older name of channel"},
        "url": {"type": "string", "description": "webhook: the http(s) URL (placeholders allowed)",
                "examples": ["https://erp.example.com/hooks/flowline"]},
        "headers": {"type": "object", "additionalProperties": {"type": "string"}},
        "body": {"description": "webhook: the JSON body (placeholders rendered)"},
        "to": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
               "description": "email: an address or a list"},
        "subject": {"type": "string"},
        "text": {"type": "string"},
        "secret_name": {"type": "string", "description": "the template secret whose key signs the webhook"},
        **failure_policy_properties(DEFAULT_MAX_RETRIES, DEFAULT_ON_FAILURE),
    },
    example={"channel": "webhook", "url": "https://erp.example.com/hooks/flowline",
             "body": {"instance": "{{instance.id}}"}},
)


def validate(problems: Problems, cp: str, config: Mapping[str, Any], actions: set[str]) -> None:
    channel = config.get("channel", config.get("type", "webhook"))
    if channel not in CHANNELS:
        problems.add(f"{cp}/channel", f"channel {channel!r} is not webhook or email")
    elif channel == "webhook":
        url = config.get("url")
        if not isinstance(url, str) or not (url.startswith(("http://", "https://", "{{"))):
            problems.add(f"{cp}/url", "a webhook notification needs an http(s) url")
    elif channel == "email":
        to = config.get("to")
        if not to or not isinstance(to, str | list):
            problems.add(f"{cp}/to", "an email notification needs to (an address or a list)")
    check_failure_policy(problems, cp, config)


def start(rec: Recorder, step: CompiledStep) -> None:
    config = rec.render(dict(step.spec.config))
    config.setdefault("channel", config.pop("type", "webhook"))
    rec.request(step, config)


def on_result(rec: Recorder, step: CompiledStep, result: ReportStepResult) -> None:
    succeeded_or_failed(rec, step, result, failed="delivery failed")


KIND = StepKind(
    type=StepType.NOTIFICATION,
    summary="a signed webhook or an email",
    config_schema=CONFIG_SCHEMA,
    validate=validate,
    start=start,
    on_result=on_result,
    handler="notification",
    max_retries=DEFAULT_MAX_RETRIES,
    on_failure=DEFAULT_ON_FAILURE,
)
