"""The PRD's ApprovalManager as a thin facade over the stream (writes) and PostgreSQL (reads).

Writes become commands on `workflow.commands`, keyed by instance id; the engine judges them (eligible
approver, quorum, duplicates) and answers with events, so nothing here decides. Reads come from the
projector's read model (migration 0004): `workflow_pending_approvals` and `workflow_step_executions`.
The gateway exposes these methods over HTTP.

An approval request is named `<instance_id>:<step>`, the pair the API paths use.

- `create_request`  -> StartInstance of a template whose steps include the approval (the engine opens the
                       request when the step starts; `level`, if given, reaches the trigger as
                       `approval_level`); `request_key` makes it idempotent
- `approve`/`reject`-> RecordDecision (command id `decide:<instance>:<step>:<actor>`, so a retried API call
                       is dropped by the engine as a duplicate)
- `escalate`        -> an `EscalateApproval` command (the engine checks that the actor may escalate)
- `check_quorum`    -> core/quorum.py over the votes the engine recorded
- `get_pending_approvals(actor)` -> open approvals whose approver spec matches the actor, not yet decided
                       by them
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from core.actors import SYSTEM, Actor
from core.approvers import matches_spec
from core.commands import Command, EscalateApproval, RecordDecision, StartInstance
from core.quorum import APPROVED, check_quorum, committee_members
from core.triggers import instance_id_for
from core.types import ApprovalLevel


class ApprovalError(Exception):
    pass


@dataclass(frozen=True)
class ApprovalRequest:
    request_id: str  # "<instance_id>:<step>"
    workflow_id: str  # the instance id
    requester: str
    approvers: Any
    level: str
    status: str
    step: int = 0
    step_name: str = ""
    required: int = 1
    deadline: datetime | None = None
    template_id: str = ""


@dataclass(frozen=True)
class ApprovalDecision:
    decision_id: str
    request_id: str
    approver: str
    action: str  # "approve" | "reject"
    reason: str
    timestamp: int


class CommandSink(Protocol):
    async def send(self, command: Command) -> None: ...


@dataclass
class FakeCommandSink:
    sent: list[Command] = field(default_factory=list)

    async def send(self, command: Command) -> None:
        self.sent.append(command)


class KafkaCommandSink:
    def __init__(self, producer: Any, topic: str, codec: Any) -> None:
        self.producer, self.topic, self.codec = producer, topic, codec

    async def send(self, command: Command) -> None:
        await self.producer.send_and_wait(self.topic, self.codec.encode(command), key=command.instance_id.encode())


def split_request_id(request_id: str) -> tuple[str, int]:
    instance_id, _, step = request_id.rpartition(":")
    if not instance_id or not step.isdigit():
        raise ApprovalError(f"approval request ids look like <instance_id>:<step>, not {request_id!r}")
    return instance_id, int(step)


class ApprovalReads(Protocol):
    async def pending_for(self, actor: Actor) -> list[dict[str, Any]]: ...

    async def step(self, instance_id: str, step: int) -> dict[str, Any] | None: ...


class PostgresApprovalReads:
    """Reads of the projector's read model."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool

    async def pending_for(self, actor: Actor) -> list[dict[str, Any]]:
        rows = await self.pool.fetch(
            """SELECT * FROM workflow_pending_approvals
               WHERE tenant_id = $1 AND NOT ($2 = ANY(decided_by))
                 AND (approver_roles && $3::text[] OR $2 = ANY(approver_users) OR $2 = ANY(approver_agents))
               ORDER BY requested_at""", actor.tenant_id, actor.id, list(actor.roles))
        return [dict(r) for r in rows]

    async def step(self, instance_id: str, step: int) -> dict[str, Any] | None:
        row = await self.pool.fetchrow(
            "SELECT * FROM workflow_step_executions WHERE instance_id = $1 AND step = $2 "
            "ORDER BY attempt DESC LIMIT 1", instance_id, step)
        return dict(row) if row else None


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _request(row: dict[str, Any]) -> ApprovalRequest:
    return ApprovalRequest(request_id=f"{row['instance_id']}:{row['step']}", workflow_id=row["instance_id"],
                           requester=row.get("initiated_by", ""), approvers=_json(row.get("approvers")),
                           level="SINGLE" if row.get("required", 1) <= 1 else "DUAL" if row["required"] == 2
                           else "COMMITTEE", status="pending", step=row["step"], step_name=row.get("step_name", ""),
                           required=row.get("required", 1), deadline=row.get("deadline"),
                           template_id=row.get("template_id", ""))


class ApprovalManager:
    def __init__(self, commands: CommandSink, reads: ApprovalReads, clock=None) -> None:
        import time

        self.commands = commands
        self.reads = reads
        self.clock = clock or (lambda: int(time.time() * 1000))

    async def create_request(self, workflow_id: str, requester: Actor, level: str | None = None, *,
                             template_version: int, tenant_id: str, trigger: dict[str, Any],
                             request_key: str) -> ApprovalRequest:
        """Start an instance of template `workflow_id`; its approval step becomes the pending request.

        `request_key` makes the call idempotent: the same key names the same instance.
        """
        instance_id = instance_id_for(workflow_id, f"manual:{request_key}")
        data = {**trigger, **({"approval_level": level} if level else {})}
        await self.commands.send(StartInstance(
            command_id=f"start:{instance_id}", instance_id=instance_id, issued_at=self.clock(),
            template_id=workflow_id, template_version=template_version, tenant_id=tenant_id, trigger=data,
            source="manual", initiated_by=requester))
        return ApprovalRequest(request_id=instance_id, workflow_id=instance_id, requester=requester.id,
                               approvers=None, level=level or "", status="requested", template_id=workflow_id)

    async def _decide(self, request_id: str, approver: Actor, decision: str, reason: str) -> ApprovalDecision:
        instance_id, step = split_request_id(request_id)
        command_id = f"decide:{instance_id}:{step}:{approver.id}"
        now = self.clock()
        await self.commands.send(RecordDecision(command_id=command_id, instance_id=instance_id, issued_at=now,
                                                step=step, decision=decision, actor=approver, reasoning=reason))
        return ApprovalDecision(decision_id=command_id, request_id=request_id, approver=approver.id,
                                action=decision, reason=reason, timestamp=now)

    async def approve(self, request_id: str, approver: Actor, reason: str = "") -> ApprovalDecision:
        return await self._decide(request_id, approver, "approve", reason)

    async def reject(self, request_id: str, approver: Actor, reason: str = "") -> ApprovalDecision:
        return await self._decide(request_id, approver, "reject", reason)

    async def escalate(self, request_id: str, new_approvers: Any, *, actor: Actor = SYSTEM, reason: str = "",
                       timeout_hours: float = 0.0) -> ApprovalRequest:
        """Hand a waiting approval to `new_approvers` now; the engine checks who may (core EscalateApproval)."""
        instance_id, step = split_request_id(request_id)
        now = self.clock()
        await self.commands.send(EscalateApproval(
            command_id=f"escalate:{instance_id}:{step}:{now}", instance_id=instance_id, issued_at=now, step=step,
            approvers=new_approvers, actor=actor, reason=reason, timeout_hours=timeout_hours))
        return ApprovalRequest(request_id=request_id, workflow_id=instance_id, requester=actor.id,
                               approvers=new_approvers, level="", status="escalation_requested")

    async def check_quorum(self, request_id: str) -> bool:
        """Have enough distinct approvers approved? (APPROVED steps: yes; open ones: count the votes.)"""
        instance_id, step = split_request_id(request_id)
        row = await self.reads.step(instance_id, step)
        if row is None:
            raise ApprovalError(f"no approval request {request_id}")
        if row["status"] == "APPROVED":
            return True
        required = int(row.get("required") or 1)
        level = ApprovalLevel.SINGLE if required <= 1 else ApprovalLevel.COMMITTEE
        votes = [v.get("decision", "") for v in _json(row.get("votes")) or []]
        return check_quorum(level, required, committee_members(_json(row.get("approvers"))), votes) == APPROVED

    async def get_pending_approvals(self, approver: Actor) -> list[ApprovalRequest]:
        rows = await self.reads.pending_for(approver)
        return [_request(r) for r in rows if matches_spec(approver, _json(r.get("approvers")))]
