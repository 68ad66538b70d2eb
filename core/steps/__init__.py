"""The registry of step types: the one table `decide`, `compile_template` and `validate_template` consult.

Each step type is one module here with its whole rulebook in `KIND` (core/steps/kind.py says what a kind
holds). Adding a type: write its module, list its `KIND` in `STEP_KINDS` below, add its value to
`core.types.StepType` (docs/adding-a-step-type.md names every place to touch).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

from core.steps import action, approval, condition, external, notification, wait
from core.steps.kind import StepKind
from core.timers import TimerPurpose
from core.types import StepType

_KINDS: dict[str, StepKind] = {
    kind.type: kind for kind in (approval.KIND, condition.KIND, action.KIND, wait.KIND, notification.KIND,
                                 external.KIND)
}
STEP_KINDS: MappingProxyType[StepType, StepKind] = MappingProxyType(_KINDS)  # type: ignore[arg-type]

# A failed step under `on_failure: human_review` is decided, and times out, by the approval rules.
REVIEW = approval.KIND


def kind_of(step_type: StepType | str) -> StepKind:
    """The kind of a type, given as the enum or its string (a StepType hashes and compares as its string)."""
    return _KINDS[step_type]


def _timer_owners() -> dict[str, StepKind]:
    owners: dict[str, StepKind] = {}
    for kind in STEP_KINDS.values():
        for purpose in kind.timers:
            assert purpose not in owners, f"timer purpose {purpose} has two owners"
            owners[purpose.value] = kind
    return owners


TIMER_OWNERS: MappingProxyType[str, StepKind] = MappingProxyType(_timer_owners())


def timer_owner(purpose: str) -> StepKind | None:
    """The step type whose `on_timer` handles a timer of this purpose (`retry` is the engine loop's own)."""
    return TIMER_OWNERS.get(purpose)


def config_schemas() -> dict[str, Any]:
    """Each step type's config schema by type name: for the OpenAPI document, the API and the builder."""
    return {kind.type.value: {"type": kind.type.value, "summary": kind.summary, "handler": kind.handler,
                              "config_schema": kind.config_schema}
            for kind in STEP_KINDS.values()}


__all__ = ["REVIEW", "STEP_KINDS", "StepKind", "TimerPurpose", "config_schemas", "kind_of", "timer_owner"]
