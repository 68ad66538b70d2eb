"""Condition step: evaluate the expression against the instance and branch, within the same decision.

Next: `if_true` / `if_false`, each `continue`, `skip_to:N`, `skip_to:<name>`, `complete` or `fail`. An
expression that fails to evaluate (dividing by zero, a string formatted with %, a result over the cost
budget) fails the step, never the engine: a guess would be worse. The step's `on_failure` applies
(`fail_workflow`, the default, or `skip`), and the error is in the instance's audit trail.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from core import events as ev
from core.expressions import ExpressionError
from core.problems import EVALUATION_FAILURE_CHOICES, Problems, check_evaluation_failure, check_expression
from core.recorder import Recorder
from core.steps.failure import fail_attempt
from core.steps.kind import EXPRESSION, TARGET, StepKind, config_schema, expressions_at
from core.types import StepType

if TYPE_CHECKING:
    from core.template import CompiledStep

CONFIG_SCHEMA = config_schema(
    StepType.CONDITION,
    "Evaluate an expression and branch, within the same decision.",
    {
        "expression": {**EXPRESSION, "examples": ["trigger.amount <= 1000"]},
        "if_true": {**TARGET, "default": "continue", "description": "where a true expression leads"},
        "if_false": {**TARGET, "default": "continue", "description": "where a false expression leads"},
        "on_failure": {"enum": list(EVALUATION_FAILURE_CHOICES), "default": "fail_workflow",
                       "description": "when the expression fails to evaluate: fail the instance or skip the step"},
    },
    required=("expression",),
    example={"expression": "trigger.amount > 10000", "if_true": "continue", "if_false": "complete"},
)


def validate(problems: Problems, cp: str, config: Mapping[str, Any], actions: set[str]) -> None:
    if "expression" not in config:
        problems.add(f"{cp}/expression", "a condition step needs an expression, e.g. 'trigger.amount <= 1000'")
    else:
        check_expression(problems, f"{cp}/expression", config["expression"])
    check_evaluation_failure(problems, cp, config, "condition")


def start(rec: Recorder, step: CompiledStep) -> None:
    expression = step.expressions["expression"]
    try:
        result = bool(expression.evaluate(rec.names()))
    except ExpressionError as exc:
        fail_attempt(rec, step, f"condition failed to evaluate: {exc}", retryable=False)
        return
    branch = "if_true" if result else "if_false"
    rec.emit(ev.ConditionEvaluated, step=step.spec.number, expression=expression.source, result=result,
             branch=branch)


KIND = StepKind(
    type=StepType.CONDITION,
    summary="evaluate an expression and branch",
    config_schema=CONFIG_SCHEMA,
    validate=validate,
    start=start,
    expressions=expressions_at("expression"),
    targets={"if_true": "continue", "if_false": "continue"},
    falls_through=False,
)
