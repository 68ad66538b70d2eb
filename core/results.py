"""A run's result (PRD-127's `PipelineResult`), computed from the instance's state: the one rule behind
`GET /v1/workflows/instances/{id}/result` and the SDK's `PipelineRunner`.

Why the failed attempts are an argument: the state keeps only each step's latest attempt, so a failure a
retry later fixed is gone from it; the audit trail (`StepFailed` events) has every one, and the caller
passes them in. Condition steps are bookkeeping of a pipeline (its guards), not results: they are left
out of `steps_completed` and `outputs`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from core.state import InstanceState
from core.template import CompiledTemplate
from core.types import StepType, TaskStatus


def pipeline_result(state: InstanceState, template: CompiledTemplate,
                    failed_attempts: Iterable[tuple[int, int, str]] = ()) -> dict[str, Any]:
    """`failed_attempts`: (step, attempt, error) of every `StepFailed` in the trail."""
    specs = template.template.steps
    names = {s.number: s.name for s in specs}
    completed, failed, outputs = [], [], {}
    failures: dict[tuple[int, int], dict[str, Any]] = {}
    for spec, step in zip(specs, state.steps, strict=False):
        if step.status is TaskStatus.COMPLETED and spec.type is not StepType.CONDITION:
            completed.append(spec.name)
            if step.output is not None:
                outputs[spec.name] = step.output
        if step.status is TaskStatus.FAILED:
            failed.append(spec.name)
        if step.error and step.status is not TaskStatus.COMPLETED and step.attempt:
            failures[(spec.number, step.attempt)] = {"step": spec.name, "number": spec.number,
                                                     "attempt": step.attempt, "error": step.error}
    for number, attempt, error in failed_attempts:
        failures.setdefault((number, attempt), {"step": names.get(number, str(number)), "number": number,
                                                "attempt": attempt, "error": error})
    current = None
    if not state.is_terminal and 0 < state.current_step <= len(specs):
        current = names[state.current_step]
    end = state.updated_at
    return {
        "pipeline_id": state.template_id, "run_id": state.instance_id, "status": state.status.value,
        "steps_completed": completed, "steps_failed": failed,
        "duration": (end - state.created_at) / 1000 if end and state.created_at else None,
        "outputs": outputs, "failures": [failures[k] for k in sorted(failures)], "current_step": current,
    }
