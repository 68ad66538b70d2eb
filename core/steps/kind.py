"""`StepKind`: the one shape every step type has, and the schema pieces several step types share.

A step type is one module (`core/steps/<type>.py`) ending in `KIND = StepKind(...)`: its config as a JSON
Schema, its validation, what compiling it parses, its lifecycle functions and the timers it owns. The
registry (`core/steps/__init__.py`) lists the kinds once; `decide`, `compile_template` and
`validate_template` look everything up there.

Why a frozen dataclass of functions and not a `typing.Protocol` or a base class: the step modules stay
modules of plain functions (quorum, retry and timer arithmetic are functions, not bases: STYLE.md), a
lifecycle a type does not have is visibly `None` instead of an inherited default that silently does
nothing, and the registry is data a test can walk (every kind has a schema, every timer purpose one owner).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from core.timers import TimerPurpose
from core.types import StepType

if TYPE_CHECKING:
    from core.problems import Problems
    from core.recorder import Recorder
    from core.template import CompiledStep, StepSpec

Lifecycle = Callable[..., None]
Validator = Callable[["Problems", str, Mapping[str, Any], "set[str]"], None]


def expressions_at(*keys: str) -> Callable[[StepSpec], dict[str, Any]]:
    """Compile the expressions found under these config keys (the usual case)."""

    def sources(spec: StepSpec) -> dict[str, Any]:
        return {key: spec.config[key] for key in keys if spec.config.get(key)}

    return sources


def _no_expressions(spec: StepSpec) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class StepKind:
    """One step type's whole rulebook.

    - `config_schema`: its config as a JSON Schema (descriptions, defaults, examples); its `properties` are
      the config keys validation accepts, so the schema and the validation cannot disagree on keys.
    - `validate(problems, pointer, config, known_actions)`: the rules beyond keys.
    - `expressions(spec)`: the expression sources compiling parses once per template version
      (`CompiledStep.expressions`); `targets`: its branch keys and their defaults (`CompiledStep.targets`);
      `falls_through`: whether a finished step may also simply continue (false for a condition, whose only
      exits are its branches).
    - Lifecycle: `start` (always), then whichever inputs the type takes: `on_result` (a handler's report),
      `on_decision` / `on_escalate` (approvers), `on_callback` (an external system), `on_payment` (the
      payment service's answer to the engine's own payment order), `on_timer` (a timer in
      `timers` fired), `on_advance` (an `advance` asks whether the wait is over; returns True if it
      finished the step). Cancelling is instance-wide (`InstanceCancelled` drops every timer): no step type
      needs its own `on_cancel`.
    - `handler`: the handler kind (`workflow.steps.<kind>`) doing its I/O, or None when the core decides it
      alone; `max_retries` / `on_failure`: its failure policy's defaults.
    """

    type: StepType
    summary: str
    config_schema: Mapping[str, Any]
    validate: Validator
    start: Callable[[Recorder, CompiledStep], None]
    on_result: Lifecycle | None = None
    on_decision: Lifecycle | None = None
    on_escalate: Lifecycle | None = None
    on_callback: Lifecycle | None = None
    on_payment: Lifecycle | None = None
    on_timer: Lifecycle | None = None
    on_advance: Callable[[Recorder, CompiledStep], bool] | None = None
    timers: tuple[TimerPurpose, ...] = ()
    expressions: Callable[[StepSpec], dict[str, Any]] = _no_expressions
    targets: Mapping[str, str] = field(default_factory=dict)
    falls_through: bool = True
    handler: str | None = None
    max_retries: int = 0
    on_failure: str = "fail_workflow"

    @property
    def config_keys(self) -> frozenset[str]:
        return frozenset(self.config_schema.get("properties", {}))


# ------------------------------------------------------------------------------- shared schema pieces

def config_schema(step_type: StepType, description: str, properties: dict[str, Any], *,
                  required: tuple[str, ...] = (), example: dict[str, Any] | None = None,
                  **extra: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"title": f"{step_type.value} step config", "description": description,
                              "type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = list(required)
    if example is not None:
        schema["examples"] = [example]
    schema.update(extra)
    return schema


APPROVER_SPEC = {
    "type": "object",
    "description": "who may decide: a role, a user id (or ids), or an agent id (or ids)",
    "properties": {"type": {"enum": ["role", "user", "agent"]},
                   "value": {"oneOf": [{"type": "string", "minLength": 1},
                                       {"type": "array", "items": {"type": "string", "minLength": 1},
                                        "minItems": 1}]}},
    "required": ["type", "value"],
    "examples": [{"type": "role", "value": "cfo"}],
}
APPROVERS = {"oneOf": [APPROVER_SPEC, {"type": "array", "items": APPROVER_SPEC, "minItems": 1}],
             "description": "an approver spec or a list of them (any one matches)"}
TARGET = {"type": "string", "pattern": r"^\s*(continue|complete|fail|skip_to:.+)\s*$",
          "description": "continue, skip_to:N, skip_to:<step name>, complete or fail"}
EXPRESSION = {"type": "string", "minLength": 1, "description": "an expression over trigger, steps.<key>, instance"}
HOURS = {"type": "number", "exclusiveMinimum": 0}


def positive(description: str, *, maximum: float | None = None, default: Any = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "number", "exclusiveMinimum": 0, "description": description}
    if maximum is not None:
        schema["maximum"] = maximum
    if default is not None:
        schema["default"] = default
    return schema


def failure_policy_properties(default_retries: int, default_on_failure: str) -> dict[str, Any]:
    """The config keys of a step that does I/O and may fail (core/steps/failure.py)."""
    return {
        "retry_config": {"type": "object", "description": "retries as durable timers before on_failure applies",
                         "properties": {"max_retries": {"type": "integer", "minimum": 0, "maximum": 20,
                                                        "default": default_retries},
                                        "backoff_ms": {"type": "integer", "minimum": 1, "maximum": 86_400_000,
                                                       "default": 1000},
                                        "max_backoff_ms": {"type": "integer", "default": 3_600_000}},
                         "additionalProperties": False},
        "on_failure": {"enum": ["retry", "skip", "fail_workflow", "human_review"], "default": default_on_failure,
                       "description": "after the last retry: fail the instance (retry, fail_workflow), move on "
                                      "(skip), or ask a human (human_review)"},
        "failure_notification": {"type": "object", "description": "a webhook (url) or email (to) sent when "
                                                                  "the step finally fails",
                                 "examples": [{"type": "webhook", "url": "https://ops.example.com/hooks"}]},
        "timeout_seconds": positive("how long one attempt may take", maximum=300, default=30),
        "review_approvers": {**APPROVERS, "description": "who reviews a failed step under human_review "
                                                          "(default role workflow_admin)"},
        "review_timeout_hours": positive("how long a human review waits", default=72),
    }
