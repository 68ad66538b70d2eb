"""Workflow templates: the epic's JSON shape, parsed into a typed model and compiled once per version.

A template document is what partners POST (`name`, `trigger_type`, `trigger_config.conditions`,
`steps[{type, name, config}]`). `parse_template` trusts a document that `validate_template` accepted;
`compile_template` parses every expression and branch target once, so the engine never parses per record.
Steps are numbered from 1, as in `skip_to:N` and the API's `/steps/{n}`; each step also has a `key`
(its optional `id`, else its name in snake_case) under which later steps read its output:
`steps.<key>.<field>`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from core.expressions import Expression, compile_expression
from core.machine import CompiledMachine, Machine, compile_machine, flatten, is_machine
from core.steps import kind_of
from core.timers import NO_TIMEOUT, OnTimeout
from core.types import StepType, TriggerType, WorkflowStatus

TRIGGER_ALIASES = {
    "on_transfer": TriggerType.EVENT,
    "event": TriggerType.EVENT,
    "manual": TriggerType.MANUAL,
    "scheduled": TriggerType.SCHEDULED,
    "schedule": TriggerType.SCHEDULED,
    "threshold": TriggerType.THRESHOLD,
}
DEFAULT_TRIGGER_TOPIC = "payments.transfers"


def parse_trigger_type(value: Any) -> TriggerType | None:
    if not isinstance(value, str):
        return None
    return TRIGGER_ALIASES.get(value.strip().lower())


def step_key(step: Mapping[str, Any]) -> str:
    explicit = step.get("id")
    if isinstance(explicit, str) and explicit:
        return explicit
    name = str(step.get("name", ""))
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "step"


@dataclass(frozen=True)
class Target:
    """Where a branch goes: `continue`, `skip_to:N` / `skip_to:<name>`, `complete` or `fail`."""

    kind: str  # "goto" | "complete" | "fail"
    step: int = 0

    def describe(self) -> str:
        return f"step {self.step}" if self.kind == "goto" else self.kind


class TargetError(ValueError):
    pass


def parse_target(raw: Any, *, current: int, names: Mapping[str, int], step_count: int) -> Target:
    if not isinstance(raw, str) or not raw.strip():
        raise TargetError("must be 'continue', 'skip_to:N', 'skip_to:<step name>', 'complete' or 'fail'")
    text = raw.strip()
    if text == "continue":
        return Target("goto", current + 1) if current < step_count else Target("complete")
    if text == "complete":
        return Target("complete")
    if text == "fail":
        return Target("fail")
    if text.startswith("skip_to:"):
        ref = text[len("skip_to:"):].strip()
        if ref.isdigit():
            number = int(ref)
            if not 1 <= number <= step_count:
                raise TargetError(f"'{text}' points outside the steps (1..{step_count})")
            return Target("goto", number)
        if ref in names:
            return Target("goto", names[ref])
        raise TargetError(f"'{text}' names no step; step names are: {', '.join(names)}")
    raise TargetError(f"'{text}' is not 'continue', 'skip_to:N', 'skip_to:<step name>', 'complete' or 'fail'")


@dataclass(frozen=True)
class StepSpec:
    number: int
    type: StepType
    name: str
    key: str
    config: Mapping[str, Any]


@dataclass(frozen=True)
class Template:
    template_id: str
    version: int
    tenant_id: str
    name: str
    trigger_type: TriggerType
    trigger_config: Mapping[str, Any]
    steps: tuple[StepSpec, ...]
    description: str = ""
    status: WorkflowStatus = WorkflowStatus.ACTIVE
    document: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    machine: Machine | None = None  # a state-machine template (core/machine.py); None for a step list

    def step(self, number: int) -> StepSpec:
        return self.steps[number - 1]

    @property
    def separation_of_duties(self) -> bool:
        """`settings.separation_of_duties` (default true): whoever started an instance, human or agent, may
        not approve any of its steps. A template turns it off only where self-approval is the intent (for
        example an agent that files and confirms its own low-risk request)."""
        settings = self.document.get("settings") if isinstance(self.document, Mapping) else None
        value = settings.get("separation_of_duties", True) if isinstance(settings, Mapping) else True
        return value is not False

    @cached_property
    def names(self) -> dict[str, int]:
        """Step name and key -> number, for `skip_to:<name>`."""
        index: dict[str, int] = {}
        for s in self.steps:
            index.setdefault(s.name, s.number)
            index.setdefault(s.key, s.number)
        return index


def parse_template(doc: Mapping[str, Any], *, template_id: str, version: int = 1, tenant_id: str = "",
                   status: WorkflowStatus = WorkflowStatus.ACTIVE) -> Template:
    """Build the model of a document that `validate_template` accepted."""
    trigger_type = parse_trigger_type(doc.get("trigger_type", "manual")) or TriggerType.MANUAL
    machine = None
    raw_steps = doc.get("steps", [])
    if is_machine(doc):
        raw_steps, machine = flatten(doc)
    steps = tuple(
        StepSpec(
            number=i,
            type=StepType(raw["type"]),
            name=str(raw["name"]),
            key=step_key(raw),
            config=dict(raw.get("config") or {}),
        )
        for i, raw in enumerate(raw_steps, start=1)
    )
    return Template(
        template_id=template_id,
        version=version,
        tenant_id=tenant_id,
        name=str(doc.get("name", "")),
        description=str(doc.get("description", "") or ""),
        trigger_type=trigger_type,
        trigger_config=dict(doc.get("trigger_config") or {}),
        steps=steps,
        status=status,
        document=doc,
        machine=machine,
    )


@dataclass(frozen=True)
class CompiledStep:
    spec: StepSpec
    expressions: Mapping[str, Expression]
    targets: Mapping[str, Target]
    on_timeout: OnTimeout = NO_TIMEOUT


@dataclass(frozen=True)
class CompiledTemplate:
    """A template with every expression parsed and every branch resolved: built once per version."""

    template: Template
    steps: tuple[CompiledStep, ...]
    machine: CompiledMachine | None = None

    def step(self, number: int) -> CompiledStep:
        return self.steps[number - 1]

    @property
    def step_count(self) -> int:
        return len(self.steps)


def compile_template(template: Template) -> CompiledTemplate:
    """Parse, once per version, what each step type says it needs: expressions, branch targets, on_timeout."""
    compiled = []
    count = len(template.steps)
    for spec in template.steps:
        kind = kind_of(spec.type)
        expressions = {name: compile_expression(source) for name, source in kind.expressions(spec).items()}
        targets = {
            key: parse_target(spec.config.get(key, default), current=spec.number, names=template.names,
                              step_count=count)
            for key, default in kind.targets.items()
        }
        compiled.append(CompiledStep(spec=spec, expressions=expressions, targets=targets,
                                     on_timeout=OnTimeout.parse(spec.config.get("on_timeout"))))
    machine = compile_machine(template.machine) if template.machine is not None else None
    return CompiledTemplate(template=template, steps=tuple(compiled), machine=machine)
