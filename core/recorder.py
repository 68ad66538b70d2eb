"""The working set of one decision: append an event, apply it at once, collect effects.

Step modules and `decide` only call `emit`, `request` and `reject`; none of them assigns to state. Each
event gets the next sequence number, the decision time and the id of the command being decided.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from core import events as ev
from core.commands import Command
from core.effects import PAYMENT_KIND, PaymentOrder, StepRequest, idempotency_key
from core.expressions import render
from core.state import InstanceState, StepState, apply

if TYPE_CHECKING:  # core.template compiles through the step registry, whose modules import this one
    from core.template import CompiledStep, CompiledTemplate

RENDERED_ROOTS = frozenset({"trigger", "steps", "instance"})
T = TypeVar("T")


def _shape(cls: type) -> tuple[dict[str, Any], frozenset[str], frozenset[str]]:
    fields = dataclasses.fields(cls)
    assert all(f.default_factory is dataclasses.MISSING for f in fields)
    defaults = {f.name: f.default for f in fields if f.default is not dataclasses.MISSING}
    names = frozenset(f.name for f in fields)
    return defaults, names, names - defaults.keys()


_SHAPES = {cls: _shape(cls) for cls in (*ev.EVENT_TYPES, StepRequest)}


def build(cls: type[T], fields: dict[str, Any]) -> T:
    """The same object as `cls(**fields)` for an event or a StepRequest, built without the frozen `__init__`.

    A frozen dataclass `__init__` sets each field through `object.__setattr__`, which made building events
    and requests a quarter of the cost of a decision. These classes have no `__post_init__`; missing or
    unknown fields are refused as `__init__` would.
    """
    defaults, names, required = _SHAPES[cls]
    if not (names.issuperset(fields) and required.issubset(fields)):
        return cls(**fields)  # raises the usual TypeError
    obj = object.__new__(cls)
    attributes = obj.__dict__
    attributes.update(defaults)
    attributes.update(fields)
    return obj


@dataclass
class Recorder:
    state: InstanceState | None
    command: Command
    template: CompiledTemplate
    now: int
    events: list[ev.Event] = field(default_factory=list)
    effects: list[StepRequest | PaymentOrder] = field(default_factory=list)

    @property
    def instance(self) -> InstanceState:
        assert self.state is not None
        return self.state

    def emit(self, event_type: type[ev.Event], **fields: Any) -> ev.Event:
        seq = (self.state.seq if self.state else 0) + 1
        fields["instance_id"] = self.command.instance_id
        fields["seq"] = seq
        fields["at"] = self.now
        fields["command_id"] = self.command.command_id
        event = build(event_type, fields)
        self.state = apply(self.state, event)
        self.events.append(event)
        return event

    def reject(self, reason: str) -> None:
        self.emit(ev.CommandRejected, command_type=type(self.command).__name__, reason=reason)

    def step_state(self, number: int) -> StepState:
        return self.instance.steps[number - 1]

    def names(self) -> dict[str, Any]:
        """What expressions and placeholders can see: trigger, earlier step outputs, instance, now."""
        state = self.instance
        return {
            "trigger": state.trigger or {},
            "steps": {
                spec.key: state.steps[spec.number - 1].output
                for spec in self.template.template.steps
                if state.steps[spec.number - 1].output is not None
            },
            "instance": {
                "id": state.instance_id,
                "template_id": state.template_id,
                "template_version": state.template_version,
                "tenant_id": state.tenant_id,
            },
            "now": self.now / 1000,
        }

    def render(self, value: Any) -> Any:
        return render(value, self.names(), RENDERED_ROOTS)

    def request(self, step: CompiledStep, config: dict[str, Any], *, key_suffix: str = "",
                kind: str | None = None) -> StepRequest:
        """Send one attempt of a step to its handler (and record that it was sent)."""
        state = self.instance
        attempt = state.steps[step.spec.number - 1].attempt
        key = idempotency_key(state.instance_id, step.spec.number, attempt) + key_suffix
        names = self.names()
        request = build(StepRequest, {
            "request_id": key,
            "instance_id": state.instance_id,
            "tenant_id": state.tenant_id,
            "template_id": state.template_id,
            "template_version": state.template_version,
            "step": step.spec.number,
            "step_name": step.spec.name,
            "step_key": step.spec.key,
            "kind": kind or step.spec.type.value,
            "attempt": attempt,
            "config": config,
            "context": {"trigger": names["trigger"], "steps": names["steps"], "instance": names["instance"]},
            "requested_at": self.now,
        })
        self.emit(ev.StepRequested, step=step.spec.number, attempt=attempt, kind=request.kind,
                  idempotency_key=key, request=config)
        self.effects.append(request)
        return request

    def order_payment(self, step: CompiledStep, order: PaymentOrder, audit: dict[str, Any], deadline: int) -> None:
        """Send the payment service one attempt of a step's payment (and record that it was sent: the
        `StepRequested` of kind `payment`, whose `audit` is what the trail shows of it, and whose `deadline`
        arms the attempt's timeout)."""
        attempt = self.instance.steps[step.spec.number - 1].attempt
        self.emit(ev.StepRequested, step=step.spec.number, attempt=attempt, kind=PAYMENT_KIND,
                  idempotency_key=order.idempotency_key, request=audit, deadline=deadline)
        self.effects.append(order)
