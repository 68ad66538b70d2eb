"""Action step: run a PayOS operation (`execute_transfer`, `simulate_transfer`, ...) through the action
handler, which owns the adapter registry and the payment service's idempotency.

Next: a `succeeded` result completes the step (its output is `steps.<key>.*`; an optional
`success_condition` over `response` = the output must hold); `failed` goes to the retry policy and
`on_failure` (default `fail_workflow`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from core.commands import ReportStepResult
from core.expressions import ExpressionError
from core.problems import Problems, check_expression, check_failure_policy
from core.recorder import Recorder
from core.steps.failure import fail_attempt, succeeded_or_failed
from core.steps.kind import EXPRESSION, StepKind, config_schema, expressions_at, failure_policy_properties
from core.types import StepType

if TYPE_CHECKING:
    from core.template import CompiledStep

KNOWN_ACTIONS = frozenset({"execute_transfer", "simulate_transfer", "lookup_transfer", "http_request"})
DEFAULT_MAX_RETRIES = 3
DEFAULT_ON_FAILURE = "fail_workflow"

CONFIG_SCHEMA = config_schema(
    StepType.ACTION,
    "Run a payment operation through the action handler.",
    {
        "action": {"type": "string", "description": "the operation (the action handler's adapters)",
                   "examples": sorted(KNOWN_ACTIONS)},
        "params": {"type": "object", "description": "the operation's parameters; {{trigger.*}}, {{steps.*}} "
                                                    "and {{instance.*}} placeholders are rendered",
                   "examples": [{"transfer_id": "{{trigger.transfer_id}}"}]},
        "success_condition": {**EXPRESSION, "description": "must hold over `response` (the output) for success"},
        **failure_policy_properties(DEFAULT_MAX_RETRIES, DEFAULT_ON_FAILURE),
    },
    required=("action",),
    example={"action": "execute_transfer", "params": {"transfer_id": "{{trigger.transfer_id}}"}},
)


def validate(problems: Problems, cp: str, config: Mapping[str, Any], actions: set[str]) -> None:
    action = config.get("action")
    if action not in actions:
        problems.add(f"{cp}/action", f"unknown action {action!r}; available: {', '.join(sorted(actions))}")
    if "params" in config and not isinstance(config["params"], Mapping):
        problems.add(f"{cp}/params", "params must be an object")
    check_expression(problems, f"{cp}/success_condition", config.get("success_condition"), required=False)
    check_failure_policy(problems, cp, config)


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
    def holds() -> bool:
        condition = step.expressions.get("success_condition")
        if condition is None:
            return True
        try:
            ok = condition.test({**rec.names(), "response": result.output})
        except ExpressionError as exc:
            fail_attempt(rec, step, str(exc), retryable=False)
            return False
        if not ok:
            fail_attempt(rec, step, f"success_condition {condition.source!r} is false", retryable=True)
        return ok

    succeeded_or_failed(rec, step, result, failed="failed", holds=holds)


KIND = StepKind(
    type=StepType.ACTION,
    summary="run a payment operation through the action handler",
    config_schema=CONFIG_SCHEMA,
    validate=validate,
    start=start,
    on_result=on_result,
    expressions=expressions_at("success_condition"),
    handler="action",
    max_retries=DEFAULT_MAX_RETRIES,
    on_failure=DEFAULT_ON_FAILURE,
)
