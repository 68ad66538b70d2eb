"""Condition step: evaluate the expression against the instance and branch, within the same decision.

Next: `if_true` / `if_false`, each `continue`, `skip_to:N`, `skip_to:<name>`, `complete` or `fail`. An
expression that fails to evaluate (e.g. dividing by zero) fails the instance: a guess would be worse.
"""

from __future__ import annotations

from core import events as ev
from core.expressions import ExpressionError
from core.recorder import Recorder
from core.template import CompiledStep


def start(rec: Recorder, step: CompiledStep) -> None:
    expression = step.expressions["expression"]
    try:
        result = bool(expression.evaluate(rec.names()))
    except ExpressionError as exc:
        rec.emit(ev.ConditionEvaluated, step=step.spec.number, expression=expression.source, result=False,
                 branch="error", error=str(exc))
        rec.emit(ev.InstanceFailed, step=step.spec.number, reason=f"condition failed to evaluate: {exc}")
        return
    branch = "if_true" if result else "if_false"
    rec.emit(ev.ConditionEvaluated, step=step.spec.number, expression=expression.source, result=result,
             branch=branch)
