"""Which templates an incoming event starts, and the instance id it starts them under.

The instance id is derived from the template id and the event id, so a redelivered event maps to the same
instance and the engine rejects the second `StartInstance` as a duplicate: no second instance, ever.
An event started inline, by the processor that consumes it (docs/adr/0014), gets an id that also lands on
the event's own partition (`instance_id_on`). Conditions use the epic's `{field, op, value}` vocabulary
over the event's trigger data.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from core.expressions import lookup
from core.template import DEFAULT_TRIGGER_TOPIC, Template
from core.types import TriggerType, WorkflowStatus


def instance_id_for(template_id: str, source_key: str) -> str:
    digest = hashlib.sha256(f"{template_id}\x00{source_key}".encode()).hexdigest()
    return f"wfi_{digest[:26]}"


def instance_id_on(template_id: str, source_key: str, partition: int, partitions: int,
                   partition_of: Callable[[str], int]) -> str:
    """The instance id an event on `partition` starts `template_id` under, such that the instance lives on
    that same partition (`partition_of(id) == partition`): so the processor that consumed the event can
    decide the start against the partition's states in the transaction that consumes it (docs/adr/0014).

    Today's id (`instance_id_for`) when it already lands there (one time in `partitions`), otherwise the
    first of `instance_id_for(template_id, source_key + "\\x00<n>")`, n = 1, 2, ... that does: on
    average `partitions` hashes. Deterministic in (template, source, partition): a redelivered event (same
    partition) gets the same id and command id, so the core still rejects a second start. The suffix cannot
    collide with another event's source, which never holds a control character (the matcher refuses
    them). `partition_of` is the partitioner's rule (Kafka's murmur2 of the key; the core does no I/O and
    knows no Kafka)."""
    if not 0 <= partition < partitions:
        raise ValueError(f"partition {partition} is not one of {partitions}")
    # each try lands on `partition` with probability 1/partitions: 64x the mean never runs out in practice
    for n in range(64 * partitions):
        candidate = instance_id_for(template_id, f"{source_key}\x00{n}" if n else source_key)
        if partition_of(candidate) == partition:
            return candidate
    raise RuntimeError(f"no instance id of {template_id} for {source_key!r} lands on partition {partition}")


def start_command_id(instance_id: str) -> str:
    return f"start:{instance_id}"


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def condition_holds(data: Mapping[str, Any], condition: Mapping[str, Any]) -> bool:
    actual = lookup(data, tuple(str(condition["field"]).split(".")))
    op = condition["op"]
    expected = condition.get("value")
    if op == "exists":
        return actual is not None
    if op == "eq":
        if isinstance(actual, bool) or isinstance(expected, bool):
            return actual is expected  # JSON true is not 1
        return actual == expected or (_number(actual) is not None and _number(actual) == _number(expected))
    if op == "ne":
        return not condition_holds(data, {**condition, "op": "eq"})
    if op in ("gt", "gte", "lt", "lte"):
        a, b = _number(actual), _number(expected)
        if a is None or b is None:
            return False
        return {"gt": a > b, "gte": a >= b, "lt": a < b, "lte": a <= b}[op]
    if op == "in":
        return actual in (expected or [])
    if op == "not_in":
        return actual not in (expected or [])
    if op == "contains":
        try:
            return expected in actual  # type: ignore[operator]
        except TypeError:
            return False
    if op == "starts_with":
        return isinstance(actual, str) and isinstance(expected, str) and actual.startswith(expected)
    return False


def matches(template: Template, topic: str, data: Mapping[str, Any]) -> bool:
    """Does this event start an instance of this (ACTIVE, EVENT or THRESHOLD) template?"""
    if template.status is not WorkflowStatus.ACTIVE:
        return False
    if template.trigger_type not in (TriggerType.EVENT, TriggerType.THRESHOLD):
        return False
    config = template.trigger_config
    if config.get("topic", DEFAULT_TRIGGER_TOPIC) != topic:
        return False
    # A template only ever sees its own tenant's events: an event without a tenant matches nothing (the
    # matcher dead-letters it before it gets here; this is the second line of that rule).
    if not template.tenant_id or data.get("tenant_id") != template.tenant_id:
        return False
    event_types = config.get("event_types")
    if event_types and data.get("event_type") not in event_types:
        return False
    if template.trigger_type is TriggerType.THRESHOLD and not condition_holds(
            data, {"field": config["field"], "op": config["op"], "value": config["value"]}):
        return False
    return all(condition_holds(data, c) for c in config.get("conditions", []))


def matching_templates(templates: Iterable[Template], topic: str, data: Mapping[str, Any]) -> list[Template]:
    return [t for t in templates if matches(t, topic, data)]


class TriggerIndex:
    """`matching_templates` for many templates: the same answer, in the same order, without testing every
    template against every event.

    Why: the matcher tested each event against every ACTIVE template (issue 15: with 83 templates of one
    tenant on one topic, a fifth of the engine's CPU), and a payment platform keeps far more. Templates are
    grouped by tenant and topic (an event only ever matches its own tenant's templates on its own topic),
    and within a group by one condition that pins a field to a text (`{"field": "metadata.type", "op":
    "eq", "value": "payroll"}`, how templates on one topic tell their events apart): such a template can
    match only an event whose field holds exactly that text, since `eq` with a text that is not a number
    holds for an equal text and for nothing else (no number, bool, list or map equals a text). Every
    candidate is then tested in full by `matches`, so the index only ever leaves out a template that could
    not match. Built once per catalog change; pure.
    """

    def __init__(self, templates: Iterable[Template]) -> None:
        self.templates = list(templates)
        # (tenant, topic) -> (positions of templates without a pinned field, {field path: {text: positions}})
        self._groups: dict[tuple[str, str], tuple[list[int], dict[tuple[str, ...], dict[str, list[int]]]]] = {}
        for position, template in enumerate(self.templates):
            if template.status is not WorkflowStatus.ACTIVE or not template.tenant_id or \
                    template.trigger_type not in (TriggerType.EVENT, TriggerType.THRESHOLD):
                continue  # `matches` is False for it whatever the event
            config = template.trigger_config
            unpinned, pinned = self._groups.setdefault(
                (template.tenant_id, config.get("topic", DEFAULT_TRIGGER_TOPIC)), ([], {}))
            pin = _pinned_text(config.get("conditions", []))
            if pin is None:
                unpinned.append(position)
            else:
                pinned.setdefault(pin[0], {}).setdefault(pin[1], []).append(position)

    def matching(self, topic: str, data: Mapping[str, Any]) -> list[Template]:
        tenant = data.get("tenant_id")
        group = self._groups.get((tenant, topic)) if isinstance(tenant, str) else None  # tenants are texts
        if group is None:
            return []
        unpinned, pinned = group
        positions = list(unpinned)
        for path, by_text in pinned.items():
            actual = lookup(data, path)
            if isinstance(actual, str):
                positions.extend(by_text.get(actual, ()))
        return [self.templates[p] for p in sorted(positions) if matches(self.templates[p], topic, data)]


def _pinned_text(conditions: Any) -> tuple[tuple[str, ...], str] | None:
    """The first condition that pins a field (its path, as `condition_holds` reads it) to a text that is not
    a number (see `TriggerIndex`), or None."""
    for condition in conditions if isinstance(conditions, list) else ():
        if isinstance(condition, Mapping) and condition.get("op") == "eq":
            value = condition.get("value")
            if isinstance(value, str) and _number(value) is None:
                return tuple(str(condition["field"]).split(".")), value
    return None
