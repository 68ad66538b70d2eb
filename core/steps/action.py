"""Action step: run a PayOS operation (`execute_transfer`, `simulate_transfer`, `lookup_transfer`,
`http_request`).

A payment (`execute_transfer`, `simulate_transfer`) whose params need nothing only a handler can fill in
(`{{secrets.*}}`, `{{tenant.*}}`, `{{payos.*}}`) is ordered by the engine itself (docs/adr/0023): a
`PaymentOrder` to the payment service's command topic, written in the transaction that starts the attempt,
keyed by the visit's operation key, with the attempt's `timeout_seconds` as a durable timer. The payment
service's answer comes back as `RecordPaymentResult` (relayed by the action handler), matched by that key.
Everything else goes through the action handler, which owns the adapter registry and the handler-side
placeholders, and reports a `ReportStepResult`.

Next: a success completes the step (its output is `steps.<key>.*`; an optional `success_condition` over
`response` = the output must hold); a handler's `failed` goes to the retry policy and `on_failure`
(default `fail_workflow`); a payment the service refused is not retried (nothing was paid, and asking again
gets the same answer); an order unanswered in time is retried under the same key, so the service executes
the visit's payment once, and the answer to any of its attempts is the step's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from core.commands import RecordPaymentResult, ReportStepResult
from core.effects import PaymentOrder
from core.expressions import ExpressionError, placeholders_in
from core.payments import EXPECTED, expected_facts
from core.problems import Problems, check_expression, check_failure_policy
from core.recorder import RENDERED_ROOTS, Recorder
from core.state import Timer
from core.steps.failure import fail_attempt, succeeded_or_failed
from core.steps.kind import EXPRESSION, StepKind, config_schema, expressions_at, failure_policy_properties
from core.timers import TimerPurpose, seconds_to_ms
from core.types import Awaiting, StepType

if TYPE_CHECKING:
    from core.template import CompiledStep

KNOWN_ACTIONS = frozenset({"execute_transfer", "simulate_transfer", "lookup_transfer", "http_request"})
PAYMENT_ACTIONS = frozenset({"execute_transfer", "simulate_transfer"})  # what the engine may order itself
DEFAULT_TIMEOUT_SECONDS = 30
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


def ordered_by_engine(config: Mapping[str, Any]) -> bool:
    """Whether the engine orders this step's payment itself (docs/adr/0023): a payment action whose params
    name only what the engine renders (`trigger`, `steps`, `instance`). A placeholder for the handlers
    (`{{secrets.*}}`, ...) keeps the step on the action handler, which renders it; the choice is the
    template's, the same for every attempt of every instance of a version."""
    if config.get("action") not in PAYMENT_ACTIONS:
        return False
    return all(path.split(".", 1)[0] in RENDERED_ROOTS for _, path in placeholders_in(config.get("params") or {}))


def start(rec: Recorder, step: CompiledStep) -> None:
    config = dict(step.spec.config)
    action = config.get("action")
    params = rec.render(config.get("params") or {})
    timeout = config.get("timeout_seconds", DEFAULT_TIMEOUT_SECONDS)
    key = operation_key(rec, step)
    audit = {"action": action, "params": params, "timeout_seconds": timeout, "operation_key": key}
    if not ordered_by_engine(config):
        rec.request(step, audit)
        return
    paid = dict(params) if isinstance(params, Mapping) else {}
    if action == "execute_transfer":  # (without a transfer id the payment service finds nothing to pay, and says so)
        # the requester's trigger may have stated any amount (docs/security.md): the payment service compares
        # these facts with its own record and pays that record, or refuses and pays nothing
        paid[EXPECTED] = expected_facts(trigger=rec.instance.trigger, params=paid,
                                        instance_id=rec.instance.instance_id)
    order = PaymentOrder(idempotency_key=key, action=str(action), tenant_id=rec.instance.tenant_id, params=paid,
                         requested_at=rec.now)
    rec.order_payment(step, order, audit, deadline=rec.now + max(seconds_to_ms(timeout), 1))


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


def on_payment(rec: Recorder, step: CompiledStep, result: RecordPaymentResult) -> None:
    """The payment service's answer to the step's order, by operation key.

    Taken while the step awaits it, and also while it waits to retry after a timeout: the service executed
    the visit's payment at most once under that key, and this is the answer to it (a retry would only be
    answered the same). Anything else is a copy or belongs to an earlier visit, and changes nothing."""
    state = rec.step_state(step.spec.number)
    key = operation_key(rec, step)
    if not ordered_by_engine(step.spec.config):  # a handler's payment: the handler reports it itself
        rec.reject(f"Step {step.spec.number} pays through the action handler; its result comes from there")
        return
    if result.operation_key != key:
        rec.reject(f"Expected the payment result of {key}, but got the one of {result.operation_key}")
        return
    if state.awaiting not in (Awaiting.PAYMENT, Awaiting.RETRY):
        rec.reject(f"Expected step {step.spec.number} to await its payment, but it awaits "
                   f"{state.awaiting.value or 'nothing'}")
        return
    action = step.spec.config.get("action")
    if result.status == "succeeded":
        report = ReportStepResult(command_id=result.command_id, instance_id=result.instance_id, step=result.step,
                                  attempt=state.attempt, outcome="succeeded", output=result.output)
        on_result(rec, step, report)
    elif result.status == "failed":
        unpaid = "; nothing was paid" if action == "execute_transfer" else ""
        fail_attempt(rec, step, f"{action} failed: {result.error or 'rejected by the payment service'}{unpaid}",
                     retryable=False)
    else:
        rec.reject(f"Expected payment status succeeded or failed, but got {result.status!r}")


def on_timer(rec: Recorder, step: CompiledStep, timer: Timer) -> None:
    """The order's attempt went unanswered: the retry policy sends it again, under the same key."""
    config = step.spec.config
    timeout = config.get("timeout_seconds", DEFAULT_TIMEOUT_SECONDS)
    fail_attempt(rec, step, f"no {config.get('action')} result within {timeout:g} s", retryable=True)


KIND = StepKind(
    type=StepType.ACTION,
    summary="run a payment operation through the action handler",
    config_schema=CONFIG_SCHEMA,
    validate=validate,
    start=start,
    on_result=on_result,
    on_payment=on_payment,
    on_timer=on_timer,
    timers=(TimerPurpose.PAYMENT_TIMEOUT,),
    expressions=expressions_at("success_condition"),
    handler="action",
    max_retries=DEFAULT_MAX_RETRIES,
    on_failure=DEFAULT_ON_FAILURE,
)
