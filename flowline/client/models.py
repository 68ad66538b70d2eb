"""Typed results of the REST API: frozen dataclasses built from the JSON the gateway returns.

Each model has the fields of its schema in `gateway/openapi.py` and keeps the whole JSON object in `raw`,
so a field the server adds later is not lost before the SDK learns its name. Timestamps become aware
`datetime`s; everything else keeps its JSON type.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

T = TypeVar("T")

TERMINAL_STATUSES = frozenset({"COMPLETED", "CANCELLED", "FAILED"})


def parse_time(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _build(cls: type[T], data: dict[str, Any], **convert: Any) -> T:
    """`cls(**known fields of data, raw=data)`, with `convert[name](value)` applied where given."""
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name == "raw":
            kwargs["raw"] = data
        elif f.name in data:
            value = data[f.name]
            kwargs[f.name] = convert[f.name](value) if f.name in convert else value
    return cls(**kwargs)


@dataclass(frozen=True)
class ActorRef:
    id: str
    kind: str  # human | agent | system

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> ActorRef:
        data = data or {}
        return cls(id=str(data.get("id", "")), kind=str(data.get("kind", "")))


@dataclass(frozen=True)
class Template:
    id: str
    tenant_id: str = ""
    name: str = ""
    description: str = ""
    trigger_type: str = ""
    status: str = ""
    version: int = 0
    created_at: datetime | None = None
    updated_at: datetime | None = None
    document: dict[str, Any] = field(default_factory=dict)
    versions: list[int] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Template:
        return _build(cls, data, created_at=parse_time, updated_at=parse_time)


@dataclass(frozen=True)
class FieldProblem:
    pointer: str
    message: str


@dataclass(frozen=True)
class ValidationResult:
    valid: bool
    errors: list[FieldProblem]
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ValidationResult:
        return cls(valid=bool(data.get("valid")), raw=data,
                   errors=[FieldProblem(str(e.get("pointer", "")), str(e.get("message", "")))
                           for e in data.get("errors") or []])


@dataclass(frozen=True)
class SecretName:
    name: str
    created_at: datetime | None = None
    updated_at: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SecretName:
        return _build(cls, data, created_at=parse_time, updated_at=parse_time)


@dataclass(frozen=True)
class CommandAccepted:
    """202: the command is on `workflow.commands`; the engine has not necessarily judged it yet."""

    command_id: str
    instance_id: str
    status: str = "accepted"
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CommandAccepted:
        return _build(cls, data)


@dataclass(frozen=True)
class StepExecution:
    step: int
    attempt: int = 1
    name: str = ""
    type: str = ""
    status: str = ""
    awaiting: str = ""
    started_at: datetime | None = None
    ended_at: datetime | None = None
    approvers: Any = None
    required: int | None = None
    votes: list[dict[str, Any]] = field(default_factory=list)
    approved_by: list[str] = field(default_factory=list)
    approved_by_agent_id: str | None = None
    agent_reasoning: str | None = None
    output: Any = None
    error: str = ""
    retries: int = 0
    external_request: Any = None
    external_response: Any = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StepExecution:
        return _build(cls, data, started_at=parse_time, ended_at=parse_time)


@dataclass(frozen=True)
class TimelineEntry:
    """One row of the audit trail (`workflow_transitions`): what happened, to which step, by whom, why."""

    seq: int
    event_type: str
    step: int | None = None
    command_id: str = ""
    actor: ActorRef = field(default_factory=lambda: ActorRef("", ""))
    reasoning: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    at: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TimelineEntry:
        return _build(cls, data, actor=ActorRef.from_json, at=parse_time)


@dataclass(frozen=True)
class Instance:
    id: str
    tenant_id: str = ""
    template_id: str = ""
    template_version: int = 0
    template_name: str = ""
    status: str = ""
    current_step: int | None = None
    current_step_name: str | None = None
    step_count: int = 0
    trigger: Any = None
    source: str = ""
    initiated_by: ActorRef = field(default_factory=lambda: ActorRef("", ""))
    agent_context: Any = None
    blocking: dict[str, Any] = field(default_factory=dict)
    failure_reason: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None
    completed_at: datetime | None = None
    last_seq: int = 0
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Instance:
        return _build(cls, data, **_INSTANCE_CONVERT)


@dataclass(frozen=True)
class InstanceDetail(Instance):
    steps: list[StepExecution] = field(default_factory=list)
    timeline: list[TimelineEntry] = field(default_factory=list)

    def step(self, number: int) -> StepExecution | None:
        """The latest attempt of step `number` (1-based), if it has started."""
        found = [s for s in self.steps if s.step == number]
        return max(found, key=lambda s: s.attempt) if found else None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> InstanceDetail:
        return _build(cls, data, **_INSTANCE_CONVERT,
                      steps=lambda v: [StepExecution.from_json(s) for s in v or []],
                      timeline=lambda v: [TimelineEntry.from_json(t) for t in v or []])


_INSTANCE_CONVERT = {"initiated_by": ActorRef.from_json, "created_at": parse_time, "updated_at": parse_time,
                     "completed_at": parse_time, "blocking": lambda v: v or {}}


@dataclass(frozen=True)
class PendingApproval:
    instance_id: str
    template_id: str = ""
    step: int = 0
    attempt: int = 1
    step_name: str = ""
    kind: str = "approval"  # approval | review
    approvers: Any = None
    required: int = 1
    approvals: int = 0
    decided_by: list[str] = field(default_factory=list)
    amount: float | None = None
    deadline: datetime | None = None
    requested_at: datetime | None = None
    links: dict[str, str] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PendingApproval:
        return _build(cls, data, deadline=parse_time, requested_at=parse_time)


@dataclass(frozen=True)
class AgentAction:
    action: str
    method: str
    href: str
    description: str = ""
    step: int | None = None


@dataclass(frozen=True)
class AgentActions:
    instance_id: str
    actor: ActorRef
    actions: list[AgentAction]
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AgentActions:
        return cls(instance_id=data.get("instance_id", ""), actor=ActorRef.from_json(data.get("actor")), raw=data,
                   actions=[AgentAction(a.get("action", ""), a.get("method", ""), a.get("href", ""),
                                        a.get("description", ""), a.get("step")) for a in data.get("actions") or []])


@dataclass(frozen=True)
class TransitionOption:
    """One outgoing transition of a state-machine instance: available to the caller now, or why not."""

    to: str
    available: bool
    why_not: str | None = None
    automatic: bool = False
    requires_approval: bool = False
    condition: str | None = None
    roles: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Transitions:
    """GET .../transitions: the current state and its transitions (state is None for a step-list template)."""

    instance_id: str
    state: str | None
    pending_transition: str | None
    transitions: list[TransitionOption]
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def available(self) -> list[str]:
        return [t.to for t in self.transitions if t.available]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Transitions:
        return cls(instance_id=data.get("instance_id", ""), state=data.get("state"),
                   pending_transition=data.get("pending_transition"), raw=data,
                   transitions=[TransitionOption(t.get("to", ""), bool(t.get("available")), t.get("why_not"),
                                                 bool(t.get("automatic")), bool(t.get("requires_approval")),
                                                 t.get("condition"), list(t.get("roles") or []))
                                for t in data.get("transitions") or []])


@dataclass(frozen=True)
class CallbackUrl:
    url: str
    method: str
    step: int
    attempt: int
    token: str
    signature_header: str = "X-Flowline-Signature"
    signature_format: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CallbackUrl:
        return _build(cls, data)


@dataclass(frozen=True)
class AgentPermissions:
    agent_id: str
    can_initiate: list[str]
    can_approve: dict[str, dict[str, Any]]
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AgentPermissions:
        perms = data.get("workflow_permissions") or {}
        return cls(agent_id=data.get("agent_id", ""), can_initiate=list(perms.get("can_initiate") or []),
                   can_approve=dict(perms.get("can_approve") or {}), raw=data)


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list endpoint; pass `next_cursor` as `cursor` for the next one (None: last page)."""

    items: list[T]
    next_cursor: str | None


CommandResult = InstanceDetail | CommandAccepted
"""What a command returns: the instance once its effect is visible (wait=True), else the acceptance."""
