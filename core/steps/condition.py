"""Condition step: evaluate the expression against the instance and branch, within the same decision.

Next: `if_true` / `if_false`, each `continue`, `skip_to:N`, `skip_to:<name>`, `complete` or `fail`. An
expression that fails to evaluate (dividing by zero, a string formatted with %, a result over the cost
budget) fails the step, never the engine: a guess would be worse. The step's `on_failure` applies
(`fail_workflow`, the default, or `skip`), and the error is in the instance's audit trail.
"""

from __future__ import annotations

from core import events as ev
from core.expressions import ExpressionError
from core.recorder import Recorder
from core.steps.failure import fail_attempt
from core.template import CompiledStep


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
