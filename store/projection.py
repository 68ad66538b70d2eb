"""The read model's fold: events in, rows out. No I/O; `store/projector.py` loads and writes.

The projector keeps each instance's `InstanceState` (built only by `core.state.apply`, like the engine's)
and derives every row from it, so the read model answers "where is it, who is blocking?" exactly as the
core would, without ever reading the engine's state. Events are applied in sequence order; an event
whose `seq` is not above the instance's `last_seq` was applied before and changes nothing (idempotent
under redelivery). A `CommandRejected` with `seq == 0` (the engine's "no such instance/template") has no
place in an instance's sequence and is only recorded as a rejected command.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from core import events as ev
from core.actors import Actor
from core.approvers import values_of
from core.blocking import blocking
from core.state import InstanceState, StepState, apply
from core.types import ActorKind, Awaiting, TaskStatus, WorkflowStatus

_ACTOR_FIELDS = ("actor", "initiated_by")
_REASON_FIELDS = ("reasoning", "reason", "blocking", "error")


def ts(ms: int | None) -> datetime | None:
    return datetime.fromtimestamp(ms / 1000, UTC) if ms else None


def _default(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value):
        # one level: `json` comes back here for the nested ones. The same JSON as `dataclasses.asdict`,
        # which deep-copies every value on the way and was a twentieth of the projector's CPU (issue 15)
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


# orjson writes enums (their value), tuples, lists, dicts and strings in C; `json` was several times slower
# on the same values, and the batch's JSON was a fifth of the projector's CPU (issue 15). Dataclasses and
# datetimes still go through `_default` (every field, `str` for a datetime: orjson's own would drop a field
# named with a leading underscore and write datetimes in another text); what orjson cannot take at all (an
# integer beyond 64 bits from a trigger's payload) falls back to `json`, so what the read model stores does
# not depend on which of them wrote it.
_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_NON_STR_KEYS


def dumps(value: Any) -> str:
    try:
        return orjson.dumps(value, default=_default, option=_ORJSON_OPTIONS).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value, default=_default, separators=(",", ":"))


def event_details(event: ev.Event) -> dict[str, Any]:
    """The event's fields for its audit row, as they are: `dumps` turns them into JSON once, with the rest
    of the batch (a JSON round trip per event here was 7 % of the projector's CPU under load, issue 15)."""
    return {f.name: getattr(event, f.name) for f in dataclasses.fields(event)
            if f.name not in ("instance_id", "seq", "at", "command_id")}


def event_actor(event: ev.Event) -> Actor | None:
    for name in _ACTOR_FIELDS:
        actor = getattr(event, name, None)
        if isinstance(actor, Actor):
            return actor
    return None


def event_reasoning(event: ev.Event) -> str:
    for name in _REASON_FIELDS:
        value = getattr(event, name, None)
        if isinstance(value, str) and value:
            return value
    return ""


def _amount(trigger: Any) -> float | None:
    value = trigger.get("amount") if isinstance(trigger, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


@dataclass
class InstanceView:
    """One instance during a batch: its state and what the batch changed."""

    state: InstanceState | None
    steps_meta: list[dict[str, str]]
    last_seq: int
    source: str = ""
    changed: bool = False
    touched_steps: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)
    external_requests: dict[tuple[int, int], Any] = field(default_factory=dict)


def blocking_info(state: InstanceState, steps_meta: list[dict[str, str]]) -> dict[str, Any]:
    """`core.blocking.blocking`, with the step names the projector has seen and the timer time as ISO 8601."""
    info = blocking(state, steps_meta)
    if "next_timer" in info:
        info["next_timer"] = {**info["next_timer"], "fire_at": ts(info["next_timer"]["fire_at"]).isoformat()}
    return info


def step_row(view: InstanceView, step: StepState) -> dict[str, Any]:
    meta = view.steps_meta[step.step - 1] if step.step <= len(view.steps_meta) else {}
    votes = [{"actor_id": v.actor_id, "actor_kind": v.actor_kind.value, "decision": v.decision,
              "reasoning": v.reasoning, "at": ts(v.at).isoformat() if v.at else None} for v in step.votes]
    agent_votes = [v for v in step.votes if v.actor_kind is ActorKind.AGENT]
    approved = [v.actor_id for v in step.votes if v.decision == "approve"]
    external_response = None
    if meta.get("type") == "external" and step.status in (TaskStatus.COMPLETED, TaskStatus.FAILED):
        external_response = step.output if step.output is not None else ({"error": step.error} if step.error
                                                                          else None)
    return {
        "step": step.step, "attempt": step.attempt, "name": meta.get("name", ""), "type": meta.get("type", ""),
        "status": step.status.value, "awaiting": step.awaiting.value, "started_at": ts(step.started_at),
        "ended_at": ts(step.ended_at), "approvers": step.approvers, "required": step.required, "votes": votes,
        "approved_by": approved, "approved_by_agent_id": agent_votes[-1].actor_id if agent_votes else None,
        "agent_reasoning": agent_votes[-1].reasoning if agent_votes else None, "output": step.output,
        "error": step.error, "retries": step.retries,
        "external_request": view.external_requests.get((step.step, step.attempt)),
        "external_response": external_response,
    }


@dataclass
class BatchRows:
    # rows by column name (store/projector.py writes each list as one JSON document, one statement per batch)
    transitions: list[dict[str, Any]] = field(default_factory=list)
    rejections: list[dict[str, Any]] = field(default_factory=list)
    security: list[dict[str, Any]] = field(default_factory=list)  # security_log rows (cross-tenant commands)
    applied: int = 0
    skipped: int = 0
    last_event_at: int = 0


def fold(views: dict[str, InstanceView], events: list[ev.Event], rows: BatchRows,
         template_steps: dict[tuple[str, int], list[dict[str, str]]]) -> None:
    """Apply `events` (in log order) to `views`, collecting transition and rejection rows in `rows`.

    An agent's `agent_context` rides on the event its command caused first (InstanceStarted,
    DecisionRecorded, AgentRecommendation); every later event of the same command in the batch gets it in
    its audit details too, so a reviewer can follow a conversation through everything the agent caused.
    """
    contexts: dict[str, Any] = {}
    for event in events:
        rows.last_event_at = max(rows.last_event_at, event.at)
        if isinstance(event, ev.CommandRejected):
            at = ts(event.at) or datetime.now(UTC)
            rows.rejections.append({"command_id": event.command_id, "instance_id": event.instance_id,
                                    "command_type": event.command_type, "reason": event.reason, "at": at})
            if event.actor_tenant_id:  # another tenant's actor: its own tenant's security log, never this trail
                rows.security.append({"command_id": event.command_id, "tenant_id": event.actor_tenant_id,
                                      "actor_id": event.actor_id, "kind": "cross_tenant_command",
                                      "command_type": event.command_type, "instance_id": event.instance_id,
                                      "reason": event.reason, "at": at})
            if event.seq == 0:
                rows.applied += 1
                continue
        view = views.get(event.instance_id)
        if view is None:
            if not isinstance(event, ev.InstanceStarted):
                rows.skipped += 1  # the start is missing (topic truncated?): nothing to fold into
                continue
            view = views[event.instance_id] = InstanceView(state=None, steps_meta=[], last_seq=0)
        if event.seq <= view.last_seq:
            rows.skipped += 1
            continue
        if isinstance(event, ev.InstanceStarted):
            meta = template_steps.get((event.template_id, event.template_version))
            view.steps_meta = [dict(m) for m in meta] if meta else [{} for _ in range(event.step_count)]
            view.source = event.source
        elif isinstance(event, ev.StepStarted) and 0 < event.step <= len(view.steps_meta):
            view.steps_meta[event.step - 1] = {"name": event.name, "type": event.type}
        elif isinstance(event, ev.StepRequested) and event.kind == "external":
            view.external_requests[(event.step, event.attempt)] = event.request
        view.state = apply(view.state, event)
        view.last_seq = event.seq
        view.changed = True
        rows.applied += 1
        state = view.state
        step = getattr(event, "step", None)
        if isinstance(step, int) and 0 < step <= len(state.steps):
            step_state = state.steps[step - 1]
            if step_state.attempt > 0:
                view.touched_steps[(step, step_state.attempt)] = step_row(view, step_state)
        actor = event_actor(event)
        details = event_details(event)
        if details.get("agent_context") is not None:
            contexts[event.command_id] = details["agent_context"]
        elif event.command_id in contexts:
            details["agent_context"] = contexts[event.command_id]
        rows.transitions.append({
            "instance_id": event.instance_id, "seq": event.seq, "tenant_id": state.tenant_id,
            "event_type": type(event).__name__, "step": step if isinstance(step, int) else None,
            "command_id": event.command_id, "actor_id": actor.id if actor else "flowline",
            "actor_kind": actor.kind.value if actor else ActorKind.SYSTEM.value,
            "reasoning": event_reasoning(event), "details": details, "at": ts(event.at) or datetime.now(UTC),
        })


def instance_row(view: InstanceView, created_at: datetime) -> dict[str, Any]:
    """The instance's `workflow_instances` row by column name, but its encoded `state` (store/projector.py
    sends the states apart, as binary). `created_at` is the one the row has or will have, so its step rows
    can carry the same value (analytics rollups, migration 0011)."""
    state = view.state
    assert state is not None
    meta = view.steps_meta
    current_name = None
    if not state.is_terminal and 0 < state.current_step <= len(meta):
        current_name = meta[state.current_step - 1].get("name")
    initiator = state.initiated_by
    finished = state.is_terminal
    return {
        "id": state.instance_id, "tenant_id": state.tenant_id, "template_id": state.template_id,
        "template_version": state.template_version, "template_name": state.template_name,
        "status": state.status.value,
        "current_step": None if state.status is WorkflowStatus.COMPLETED else state.current_step,
        "current_step_name": current_name, "step_count": len(state.steps), "trigger": state.trigger,
        "source": view.source, "initiated_by": initiator.id, "initiated_by_kind": initiator.kind.value,
        "initiated_by_agent_id": initiator.id if initiator.kind is ActorKind.AGENT else None,
        "agent_context": state.agent_context, "blocking": blocking_info(state, meta),
        "failure_reason": state.failure, "amount": _amount(state.trigger),
        "last_seq": view.last_seq, "created_at": created_at, "updated_at": ts(state.updated_at) or datetime.now(UTC),
        "completed_at": ts(state.updated_at) if finished else None, "steps_meta": meta,
        "machine_state": state.machine_state or None, "pending_transition": state.pending_transition or None,
    }


def pending_row(view: InstanceView) -> dict[str, Any] | None:
    """The instance's open approval (or human review) by column name, or None: then any old row is deleted."""
    state = view.state
    if state is None or state.status is not WorkflowStatus.ACTIVE:
        return None
    current = state.current
    if current is None or current.awaiting not in (Awaiting.APPROVAL, Awaiting.REVIEW):
        return None
    meta = view.steps_meta[state.current_step - 1] if state.current_step <= len(view.steps_meta) else {}
    deadlines = [t.fire_at for t in state.timers if t.step == state.current_step and t.step]
    return {
        "instance_id": state.instance_id, "tenant_id": state.tenant_id, "template_id": state.template_id,
        "step": state.current_step, "attempt": current.attempt, "step_name": meta.get("name", ""),
        "kind": "review" if current.awaiting is Awaiting.REVIEW else "approval", "approvers": current.approvers,
        "approver_roles": values_of(current.approvers, "role"), "approver_users": values_of(current.approvers, "user"),
        "approver_agents": values_of(current.approvers, "agent"), "required": current.required or 1,
        "approvals": sum(1 for v in current.counted_votes if v.decision == "approve"),
        "decided_by": [v.actor_id for v in current.votes], "initiated_by": state.initiated_by.id,
        "amount": _amount(state.trigger), "deadline": ts(min(deadlines)) if deadlines else None,
        "requested_at": ts(current.started_at) or datetime.now(UTC),
        "recommendations": [{"agent_id": r.actor_id, "decision": r.decision, "reasoning": r.reasoning,
                             "refusal": r.refusal, "at": ts(r.at)} for r in current.recommendations],
    }
