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

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from core import events as ev
from core.commands import CompleteExternal, ReportStepResult
from core.expressions import ExpressionError, compile_expression
from core.problems import Problems, check_expression, check_failure_policy, positive_number
from core.recorder import Recorder
from core.state import Timer
from core.steps.failure import fail_attempt
from core.steps.kind import EXPRESSION, StepKind, config_schema, failure_policy_properties, positive
from core.timers import TimerPurpose, hours_to_ms
from core.types import Awaiting, StepType

if TYPE_CHECKING:
    from core.template import CompiledStep, StepSpec

DEFAULT_SUCCESS = compile_expression("response.status >= 200 and response.status < 300")
DEFAULT_COMPLETION_TIMEOUT_HOURS = 24
DEFAULT_MAX_RETRIES = 3
DEFAULT_ON_FAILURE = "fail_workflow"
REQUEST_KEYS = ("url", "method", "headers", "body", "query", "timeout_seconds", "mode")
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD")
FIELD_NAME = r"[A-Za-z_][A-Za-z0-9_]*"

CONFIG_SCHEMA = config_schema(
    StepType.EXTERNAL,
    "Call an ERP, CRM or any HTTP API; sync, or async with a signed completion callback.",
    {
        "url": {"type": "string", "description": "http(s) URL; {{secrets.*}} and other placeholders allowed",
                "examples": ["https://erp.example.com/api/purchase-orders/{{trigger.metadata.po}}"]},
        "method": {"enum": list(HTTP_METHODS), "default": "GET"},
        "headers": {"type": "object", "additionalProperties": {"type": "string"},
                    "examples": [{"Authorization": "Bearer {{secrets.erp_token}}"}]},
        "body": {"description": "the JSON body (placeholders rendered)"},
        "query": {"type": "object", "description": "query parameters"},
        "mode": {"enum": ["sync", "async"], "default": "sync",
                 "description": "async: a good response means accepted; the step waits for complete-external"},
        "completion_timeout_hours": positive("async: how long to wait for the callback", maximum=24 * 90,
                                             default=DEFAULT_COMPLETION_TIMEOUT_HOURS),
        "success_condition": {**EXPRESSION, "default": "response.status >= 200 and response.status < 300",
                              "description": "must hold over `response` (status, headers, body)"},
        "extract_fields": {"type": "object", "description": "output names -> paths into the response; later "
                                                            "steps read steps.<key>.<name>",
                           "propertyNames": {"pattern": f"^{FIELD_NAME}$"},
                           "additionalProperties": EXPRESSION,
                           "examples": [{"po_amount": "response.body.total_amount"}]},
        **failure_policy_properties(DEFAULT_MAX_RETRIES, DEFAULT_ON_FAILURE),
    },
    required=("url",),
    example={"url": "https://erp.example.com/api/po/{{trigger.metadata.po}}", "method": "GET",
             "extract_fields": {"po_amount": "response.body.total_amount"}},
)


def validate(problems: Problems, cp: str, config: Mapping[str, Any], actions: set[str]) -> None:
    url = config.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://", "{{")):
        problems.add(f"{cp}/url", "an external step needs an http(s) url")
    method = str(config.get("method", "GET")).upper()
    if method not in HTTP_METHODS:
        problems.add(f"{cp}/method", f"method {config.get('method')!r} is not one of {', '.join(HTTP_METHODS)}")
    mode = config.get("mode", "sync")
    if mode not in ("sync", "async"):
        problems.add(f"{cp}/mode", f"mode {mode!r} is not sync or async")
    if "headers" in config and not isinstance(config["headers"], Mapping):
        problems.add(f"{cp}/headers", "headers must be an object of strings")
    check_expression(problems, f"{cp}/success_condition", config.get("success_condition"), required=False)
    extract = config.get("extract_fields")
    if extract is not None:
        if not isinstance(extract, Mapping):
            problems.add(f"{cp}/extract_fields", "extract_fields must map output names to paths like response.body.x")
        else:
            for name, path in extract.items():
                if not re.fullmatch(FIELD_NAME, str(name)):
                    problems.add(f"{cp}/extract_fields/{name}", "field names are letters, digits and _")
                check_expression(problems, f"{cp}/extract_fields/{name}", path)
    positive_number(problems, f"{cp}/completion_timeout_hours", config.get("completion_timeout_hours"),
                    maximum=24 * 90)
    check_failure_policy(problems, cp, config)


def expressions(spec: StepSpec) -> dict[str, Any]:
    """`success_condition`, and each `extract_fields` path (`response.body.total_amount`) as an expression."""
    sources: dict[str, Any] = {}
    if spec.config.get("success_condition"):
        sources["success_condition"] = spec.config["success_condition"]
    for name, path in (spec.config.get("extract_fields") or {}).items():
        sources[f"extract_fields.{name}"] = path
    return sources


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
        hours = step.spec.config.get("completion_timeout_hours", DEFAULT_COMPLETION_TIMEOUT_HOURS)
        rec.emit(ev.ExternalCallAccepted, step=step.spec.number, attempt=result.attempt,
                 deadline=rec.now + hours_to_ms(hours))
        return
    try:
        output = extract(step, names)
    except ExpressionError as exc:
        fail_attempt(rec, step, f"extract_fields failed: {exc}", retryable=False)
        return
    rec.emit(ev.StepSucceeded, step=step.spec.number, attempt=result.attempt, output=output)


def on_callback(rec: Recorder, step: CompiledStep, callback: CompleteExternal) -> None:
    """`complete-external` (its signature verified by the gateway) for the step awaiting it."""
    step_state = rec.step_state(step.spec.number)
    # A fast external system may call back before the handler's report of the call reaches us: for an
    # async step still awaiting its handler the callback proves the call was made, so it counts.
    early = step_state.awaiting is Awaiting.HANDLER and is_async(step)
    if not (step_state.awaiting is Awaiting.CALLBACK or early):
        rec.reject(f"Expected step {step.spec.number} to await an external callback, but it awaits "
                   f"{step_state.awaiting.value or 'nothing'}")
        return
    if callback.status not in ("completed", "failed"):
        rec.reject(f"Expected status 'completed' or 'failed', but got {callback.status!r}")
        return
    attempt = step_state.attempt
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


KIND = StepKind(
    type=StepType.EXTERNAL,
    summary="call an ERP, CRM or any HTTP API",
    config_schema=CONFIG_SCHEMA,
    validate=validate,
    start=start,
    on_result=on_result,
    on_callback=on_callback,
    on_timer=on_timer,
    timers=(TimerPurpose.CALLBACK_TIMEOUT,),
    expressions=expressions,
    handler="external",
    max_retries=DEFAULT_MAX_RETRIES,
    on_failure=DEFAULT_ON_FAILURE,
)
