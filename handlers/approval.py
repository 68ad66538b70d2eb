"""Approval handler: find who must decide, record the request, tell them (stories 29.3, 29.8).

For each approval request (a new approval step, an escalation, or the human review of a failed step) it
resolves the approver spec (`{"type": "role", "value": "cfo"}`, users, agents, or a list of those)
against the `principals` directory of the instance's tenant and sends every resolved principal a notice
through the notification ports: email
to those with an address, a signed webhook to those with a `webhook_url` (agents, typically). An
escalation (`config.escalation > 0`) sends escalation notices. Every delivery is recorded once in
`approval_notifications`, so a redelivered request only retries what failed.

It reports no step result: the step completes through decisions (`RecordDecision` from the gateway) or
its timer. Pending approvals are read from the projector's `workflow_pending_approvals`, not from here.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from cachetools import TTLCache

from core.approvers import describe, spec_list
from core.effects import StepRequest
from core.signing import sign_payload
from handlers import metrics
from handlers.notification import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    DeliveryError,
    Email,
    EmailSender,
    Webhook,
    WebhookSender,
    canonical_json,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Principal:
    id: str
    tenant_id: str
    kind: str  # "human" | "agent"
    display_name: str = ""
    email: str | None = None
    webhook_url: str | None = None
    roles: tuple[str, ...] = ()


def _values(spec: Mapping[str, Any]) -> list[str]:
    value = spec.get("value")
    return [str(v) for v in value] if isinstance(value, list) else ([str(value)] if value is not None else [])


def resolve(principals: Sequence[Principal], approvers: Any) -> list[Principal]:
    """The principals an approver spec names (spec order, then directory order), each once."""
    chosen: dict[str, Principal] = {}
    for spec in spec_list(approvers):
        kind, values = spec.get("type"), set(_values(spec))
        for p in principals:
            by_role = kind == "role" and values & set(p.roles)
            by_id = kind in ("user", "agent") and p.kind == ("human" if kind == "user" else "agent") and p.id in values
            if by_role or by_id:
                chosen.setdefault(p.id, p)
    return list(chosen.values())


class Directory(Protocol):
    async def principals_for(self, tenant_id: str, approvers: Any) -> list[Principal]: ...


@dataclass
class InMemoryDirectory:
    principals: list[Principal] = field(default_factory=list)

    async def principals_for(self, tenant_id: str, approvers: Any) -> list[Principal]:
        return resolve([p for p in self.principals if p.tenant_id == tenant_id], approvers)


def principal_from_row(row: Mapping[str, Any]) -> Principal:
    return Principal(id=row["id"], tenant_id=row["tenant_id"], kind=row["kind"], display_name=row["display_name"],
                     email=row["email"], webhook_url=row["webhook_url"], roles=tuple(row["roles"] or ()))


DIRECTORY_SECONDS = 5.0  # how long a directory answer is reused (the gateway keeps a token as long)


class PostgresDirectory:
    """The `principals` table, each answer kept for `ttl` seconds per tenant and approver spec.

    Why the cache: every approval of a template's step names the same spec, and the directory statement
    was one of the handler's three round trips per approval (directory, delivered?, record). A principal
    added, removed or given another role gets (or stops getting) notices within `ttl`; who may *decide*
    is never judged from here but by the engine on its own state (core.approvers), so a stale answer can
    only send or miss a notice for those seconds, never grant anything.
    """

    def __init__(self, pool: Any, *, ttl: float = DIRECTORY_SECONDS, timer=time.monotonic) -> None:
        self.pool = pool
        self._answers: TTLCache = TTLCache(maxsize=1024, ttl=ttl, timer=timer)

    async def principals_for(self, tenant_id: str, approvers: Any) -> list[Principal]:
        key = (tenant_id, json.dumps(approvers, sort_keys=True, default=str))
        found = self._answers.get(key)
        if found is None:
            roles, ids = [], []
            for spec in spec_list(approvers):
                (roles if spec.get("type") == "role" else ids).extend(_values(spec))
            rows = await self.pool.fetch(
                "SELECT * FROM principals WHERE tenant_id = $1 AND (roles && $2::text[] OR id = ANY($3::text[])) "
                "ORDER BY id", tenant_id, roles, ids)
            found = self._answers[key] = tuple(principal_from_row(r) for r in rows)
        return resolve(found, approvers)


# ------------------------------------------------------------------------------------------------ the record

class ApprovalLog(Protocol):
    async def delivered(self, request_id: str, principal_id: str, channel: str) -> bool: ...

    async def record_delivery(self, request: StepRequest, principal_id: str, channel: str, notice: str,
                              error: str) -> None: ...


@dataclass
class InMemoryApprovalLog:
    deliveries: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)

    async def delivered(self, request_id: str, principal_id: str, channel: str) -> bool:
        entry = self.deliveries.get((request_id, principal_id, channel))
        return entry is not None and entry["status"] == "delivered"

    async def record_delivery(self, request: StepRequest, principal_id: str, channel: str, notice: str,
                              error: str) -> None:
        key = (request.request_id, principal_id, channel)
        attempts = self.deliveries.get(key, {}).get("attempts", 0) + 1
        self.deliveries[key] = {"status": "failed" if error else "delivered", "error": error, "notice": notice,
                                "attempts": attempts}


class PostgresApprovalLog:
    def __init__(self, pool: Any) -> None:
        self.pool = pool

    async def delivered(self, request_id: str, principal_id: str, channel: str) -> bool:
        status = await self.pool.fetchval(
            "SELECT status FROM approval_notifications WHERE request_id = $1 AND principal_id = $2 AND channel = $3",
            request_id, principal_id, channel)
        return status == "delivered"

    async def record_delivery(self, request: StepRequest, principal_id: str, channel: str, notice: str,
                              error: str) -> None:
        await self.pool.execute(
            """INSERT INTO approval_notifications (request_id, principal_id, channel, instance_id, step, escalation,
                   notice, status, error)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
               ON CONFLICT (request_id, principal_id, channel) DO UPDATE SET status = EXCLUDED.status,
                   error = EXCLUDED.error, attempts = approval_notifications.attempts + 1, updated_at = now()""",
            request.request_id, principal_id, channel, request.instance_id, request.step,
            int((request.config or {}).get("escalation") or 0), notice, "failed" if error else "delivered", error)


# ------------------------------------------------------------------------------------------------ handler

def notice_kind(config: Mapping[str, Any]) -> str:
    if config.get("review"):
        return "review_requested"
    if int(config.get("escalation") or 0) > 0:
        return "approval_escalated"
    return "approval_requested"


class ApprovalHandler:
    def __init__(self, *, directory: Directory, log_store: ApprovalLog, webhooks: WebhookSender, emails: EmailSender,
                 signing_key: bytes, public_url: str, clock=time.time) -> None:
        self.directory = directory
        self.log_store = log_store
        self.webhooks = webhooks
        self.emails = emails
        self.signing_key = signing_key
        self.public_url = public_url.rstrip("/")
        self.clock = clock
        self._busy: dict[str, asyncio.Lock] = {}

    async def handle(self, request: StepRequest) -> None:
        # copies of one request handled at once (a redelivery overlapping the original) take turns, so the
        # second sees what the first delivered
        lock = self._busy.setdefault(request.request_id, asyncio.Lock())
        try:
            async with lock:
                await self._handle(request)
        finally:
            if not lock.locked():
                self._busy.pop(request.request_id, None)

    async def _handle(self, request: StepRequest) -> None:
        config = dict(request.config or {})
        approvers = config.get("approvers")
        principals = await self.directory.principals_for(request.tenant_id, approvers)
        if not principals:
            log.warning("approval %s: nobody in tenant %s matches %s", request.request_id, request.tenant_id,
                        describe(approvers))
        notice = notice_kind(config)
        payload = self.payload(request, config, notice)
        for principal in principals:
            for channel in ("email", "webhook"):
                if (channel == "email" and not principal.email) or (channel == "webhook" and not principal.webhook_url):
                    continue
                if await self.log_store.delivered(request.request_id, principal.id, channel):
                    continue
                error = ""
                try:
                    await self._send(channel, principal, request, payload)
                    metrics.DELIVERIES.labels(channel, "delivered").inc()
                except DeliveryError as exc:
                    error = str(exc) or "delivery failed"
                    metrics.DELIVERIES.labels(channel, "failed").inc()
                    log.warning("approval notice %s to %s via %s failed: %s", request.request_id, principal.id,
                                channel, error)
                await self.log_store.record_delivery(request, principal.id, channel, notice, error)

    def payload(self, request: StepRequest, config: Mapping[str, Any], notice: str) -> dict[str, Any]:
        base = f"{self.public_url}/v1/workflows/instances/{request.instance_id}/steps/{request.step}"
        return {
            "type": notice, "instance_id": request.instance_id, "template_id": request.template_id,
            "tenant_id": request.tenant_id, "step": request.step, "step_name": request.step_name,
            "level": config.get("level"), "required": config.get("required"), "approvers": config.get("approvers"),
            "deadline": config.get("deadline") or None, "escalation": int(config.get("escalation") or 0),
            "description": config.get("description") or config.get("error") or "",
            "approve_url": f"{base}/approve", "reject_url": f"{base}/reject", "request_id": request.request_id,
        }

    async def _send(self, channel: str, principal: Principal, request: StepRequest,
                    payload: Mapping[str, Any]) -> None:
        key = f"{request.request_id}:{principal.id}"
        if channel == "webhook":
            body = canonical_json({**payload, "principal_id": principal.id})
            headers = {"Content-Type": "application/json", IDEMPOTENCY_HEADER: key,
                       SIGNATURE_HEADER: sign_payload(self.signing_key, body, int(self.clock()))}
            await self.webhooks.send(Webhook(url=str(principal.webhook_url), body=body, headers=headers))
            return
        verb = {"approval_escalated": "Escalated: approval needed", "review_requested": "Review needed"}.get(
            payload["type"], "Approval needed")
        text = (f"Hello {principal.display_name or principal.id},\n\n{verb} for step {request.step} "
                f"({request.step_name}) of workflow instance {request.instance_id}.\n"
                f"{payload['description']}\n\nApprove: {payload['approve_url']}\nReject: {payload['reject_url']}\n")
        await self.emails.send(Email(to=(str(principal.email),), subject=f"{verb}: {request.step_name}", text=text,
                                     idempotency_key=key))
