"""`AsyncClient`: the whole Flowline REST API on aiohttp (the HTTP library the project already uses).

    async with AsyncClient("http://127.0.0.1:8700", token="fl_dev_alice_cfo") as fl:
        async for item in fl.iter_instances(status="ACTIVE"):
            ...

The URL and token default to `FLOWLINE_URL` and `FLOWLINE_TOKEN`. Errors are the typed exceptions of
`flowline.client.errors`; list endpoints have an `iter_*` twin that follows `next_cursor`; commands take
`wait=True` (the gateway then answers with the instance once its read model shows the effect, or 409 with
the engine's reason) and `idempotency_key` (a retried call is answered from the gateway's stored response,
and the engine drops the duplicate command).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar

import aiohttp

from flowline.client import operations as ops
from flowline.client.errors import NotFound, TransportError, problem_error
from flowline.client.models import (
    AgentActions,
    AgentPermissions,
    CallbackUrl,
    CommandResult,
    Instance,
    InstanceDetail,
    Page,
    PendingApproval,
    SecretName,
    Template,
    TimelineEntry,
    Transitions,
    ValidationResult,
)
from schemas.settings import given

T = TypeVar("T")

DEFAULT_URL = "http://127.0.0.1:8700"


def resolve(base_url: str | None, token: str | None) -> tuple[str, str | None]:
    """Arguments win over `FLOWLINE_URL` / `FLOWLINE_TOKEN`; the URL falls back to the dev gateway."""
    url = base_url or given("FLOWLINE_URL") or DEFAULT_URL
    return url.rstrip("/"), token if token is not None else given("FLOWLINE_TOKEN")


class AsyncClient:
    def __init__(self, base_url: str | None = None, token: str | None = None, *, timeout: float = 30.0,
                 session: aiohttp.ClientSession | None = None) -> None:
        self.base_url, self.token = resolve(base_url, token)
        self.timeout = timeout
        self._session = session
        self._owns_session = session is None
        self._parent: AsyncClient | None = None

    # ------------------------------------------------------------------------------------------- plumbing
    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connections (a `with_token` client leaves them to the client it came from)."""
        if self._parent is None and self._session is not None and self._owns_session:
            await self._session.close()
        self._session = None

    def with_token(self, token: str) -> AsyncClient:
        """The same server as another principal, sharing this client's connections (closing this client
        closes them for both)."""
        other = AsyncClient(self.base_url, token, timeout=self.timeout)
        other._parent = self._parent or self
        return other

    def _get_session(self) -> aiohttp.ClientSession:
        if self._parent is not None:
            return self._parent._get_session()
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
            self._owns_session = True
        return self._session

    async def call(self, call: ops.Call[T]) -> T:
        """Send one operation; its parsed result, or the typed exception of its problem document."""
        headers = {"Accept": "application/json", **call.headers}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if call.body is not None:
            headers["Content-Type"] = "application/json"
        url = self.base_url + call.path
        try:
            async with self._get_session().request(call.method, url, params=call.params or None, data=call.body,
                                                   headers=headers) as response:
                text = await response.text()
                status, response_headers = response.status, dict(response.headers)
        except (TimeoutError, aiohttp.ClientConnectionError) as exc:
            raise TransportError(f"{call.method} {url}: {exc or type(exc).__name__}") from exc
        try:
            body: Any = json.loads(text) if text else None
        except ValueError:
            body = text
        if status >= 400:
            raise problem_error(status, body, method=call.method, url=url, headers=response_headers)
        return call.parse(status, body)

    async def _pages(self, make: Callable[[str | None], ops.Call[Page[T]]]) -> AsyncIterator[T]:
        cursor: str | None = None
        while True:
            page = await self.call(make(cursor))
            for item in page.items:
                yield item
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    # ------------------------------------------------------------------------------------------- templates
    async def list_templates(self, status: str | None = None, *, cursor: str | None = None,
                             limit: int | None = None) -> Page[Template]:
        return await self.call(ops.list_templates(status, cursor, limit))

    def iter_templates(self, status: str | None = None, *, page_size: int | None = None) -> AsyncIterator[Template]:
        return self._pages(lambda cursor: ops.list_templates(status, cursor, page_size))

    async def get_template(self, template_id: str, version: int | None = None) -> Template:
        return await self.call(ops.get_template(template_id, version))

    async def template_versions(self, template_id: str) -> list[int]:
        return list((await self.get_template(template_id)).versions)

    async def create_template(self, document: Mapping[str, Any], *, idempotency_key: str | None = None) -> Template:
        return await self.call(ops.create_template(document, idempotency_key))

    async def instantiate_template(self, template_id: str, overrides: Mapping[str, Any]) -> Template:
        """A new template from `template_id`'s current document with `overrides` applied on the server."""
        return await self.call(ops.instantiate_template(template_id, overrides))

    async def update_template(self, template_id: str, document: Mapping[str, Any]) -> Template:
        return await self.call(ops.update_template(template_id, document))

    async def validate_template(self, template_id: str, document: Mapping[str, Any]) -> ValidationResult:
        return await self.call(ops.validate_template(template_id, document))

    async def deactivate_template(self, template_id: str) -> Template:
        return await self.call(ops.deactivate_template(template_id))

    async def set_secret(self, template_id: str, name: str, value: str) -> SecretName:
        return await self.call(ops.set_secret(template_id, name, value))

    async def list_secrets(self, template_id: str) -> list[SecretName]:
        return await self.call(ops.list_secrets(template_id))

    # ------------------------------------------------------------------------------------------- instances
    async def start_instance(self, template_id: str, trigger_data: Mapping[str, Any] | None = None, *,
                             agent_context: Mapping[str, Any] | None = None, wait: bool = False,
                             idempotency_key: str | None = None) -> CommandResult:
        return await self.call(ops.start_instance(template_id, trigger_data, agent_context=agent_context, wait=wait,
                                                  idempotency_key=idempotency_key))

    trigger = start_instance

    async def list_instances(self, *, status: str | None = None, template_id: str | None = None,
                             created_after: datetime | str | None = None, created_before: datetime | str | None = None,
                             blocked_on_me: bool = False, cursor: str | None = None,
                             limit: int | None = None) -> Page[Instance]:
        return await self.call(ops.list_instances(status=status, template_id=template_id, created_after=created_after,
                                                  created_before=created_before, blocked_on_me=blocked_on_me,
                                                  cursor=cursor, limit=limit))

    def iter_instances(self, *, status: str | None = None, template_id: str | None = None,
                       created_after: datetime | str | None = None, created_before: datetime | str | None = None,
                       blocked_on_me: bool = False, page_size: int | None = None) -> AsyncIterator[Instance]:
        return self._pages(lambda cursor: ops.list_instances(
            status=status, template_id=template_id, created_after=created_after, created_before=created_before,
            blocked_on_me=blocked_on_me, cursor=cursor, limit=page_size))

    async def get_instance(self, instance_id: str) -> InstanceDetail:
        return await self.call(ops.get_instance(instance_id))

    async def timeline(self, instance_id: str) -> list[TimelineEntry]:
        """The instance's audit trail, oldest first."""
        return list((await self.get_instance(instance_id)).timeline)

    async def wait_for_instance(self, instance_id: str, until: Callable[[InstanceDetail], bool] | None = None, *,
                                timeout: float = 30.0, interval: float = 0.2) -> InstanceDetail:
        """Poll until `until(instance)` holds (default: the instance has finished); TimeoutError otherwise.
        A 404 while the read model has not seen the instance yet counts as "not yet"."""
        check = until or (lambda i: i.finished)
        deadline = time.monotonic() + timeout
        last: InstanceDetail | None = None
        while True:
            try:
                last = await self.get_instance(instance_id)
                if check(last):
                    return last
            except NotFound:
                pass
            if time.monotonic() >= deadline:
                state = f"status {last.status} at step {last.current_step}" if last else "not visible"
                raise TimeoutError(f"instance {instance_id} did not reach the expected state in {timeout} s "
                                   f"({state})")
            await asyncio.sleep(interval)

    async def approve(self, instance_id: str, step: int, reasoning: str | None = None, *,
                      agent_signature: str | None = None, wait: bool = False,
                      idempotency_key: str | None = None, signed_at: int | None = None,
                      agent_context: dict[str, Any] | None = None) -> CommandResult:
        return await self.call(ops.approve(instance_id, step, reasoning, agent_signature=agent_signature, wait=wait,
                                           idempotency_key=idempotency_key, signed_at=signed_at,
                                           agent_context=agent_context))

    async def reject(self, instance_id: str, step: int, reasoning: str | None = None, *,
                     agent_signature: str | None = None, wait: bool = False,
                     idempotency_key: str | None = None, signed_at: int | None = None,
                     agent_context: dict[str, Any] | None = None) -> CommandResult:
        return await self.call(ops.reject(instance_id, step, reasoning, agent_signature=agent_signature, wait=wait,
                                          idempotency_key=idempotency_key, signed_at=signed_at,
                                          agent_context=agent_context))

    async def escalate(self, instance_id: str, step: int, approvers: Any = None, *, reason: str | None = None,
                       timeout_hours: float | None = None, wait: bool = False,
                       idempotency_key: str | None = None) -> CommandResult:
        return await self.call(ops.escalate(instance_id, step, approvers, reason=reason, timeout_hours=timeout_hours,
                                            wait=wait, idempotency_key=idempotency_key))

    async def advance(self, instance_id: str, *, wait: bool = False,
                      idempotency_key: str | None = None) -> CommandResult:
        return await self.call(ops.advance(instance_id, wait=wait, idempotency_key=idempotency_key))

    async def pause(self, instance_id: str, reason: str | None = None, *, wait: bool = False,
                    idempotency_key: str | None = None) -> CommandResult:
        return await self.call(ops.pause(instance_id, reason, wait=wait, idempotency_key=idempotency_key))

    async def resume(self, instance_id: str, *, wait: bool = False,
                     idempotency_key: str | None = None) -> CommandResult:
        return await self.call(ops.resume(instance_id, wait=wait, idempotency_key=idempotency_key))

    async def cancel(self, instance_id: str, reason: str | None = None, *, wait: bool = False,
                     idempotency_key: str | None = None) -> CommandResult:
        return await self.call(ops.cancel(instance_id, reason, wait=wait, idempotency_key=idempotency_key))

    async def retry_step(self, instance_id: str, step: int, *, wait: bool = False,
                         idempotency_key: str | None = None) -> CommandResult:
        return await self.call(ops.retry_step(instance_id, step, wait=wait, idempotency_key=idempotency_key))

    async def complete_external(self, instance_id: str, step: int, status: str, result: Any = None, *,
                                token: str | None = None, wait: bool = False,
                                idempotency_key: str | None = None) -> CommandResult:
        """Complete an async external step. Without `token`, the step's current callback token is fetched
        first (needs the integration, operator or admin role)."""
        if token is None:
            token = (await self.callback_url(instance_id, step)).token
        return await self.call(ops.complete_external(instance_id, step, status, result, token=token, wait=wait,
                                                     idempotency_key=idempotency_key))

    async def callback_url(self, instance_id: str, step: int) -> CallbackUrl:
        return await self.call(ops.callback_url(instance_id, step))

    async def step_types(self) -> list[dict[str, Any]]:
        """The step types with each one's config JSON Schema (what a template's `steps[].config` may hold)."""
        return await self.call(ops.step_types())

    async def request_transition(self, instance_id: str, target_state: str, reason: str | None = None, *,
                                 wait: bool = False, idempotency_key: str | None = None,
                                 agent_signature: str | None = None, signed_at: int | None = None,
                                 agent_context: dict[str, Any] | None = None) -> CommandResult:
        """Ask a state-machine instance to move to `target_state` (docs/state-machines.md); an agent may sign
        the request (docs/agents.md) and give its agent_context."""
        return await self.call(ops.request_transition(instance_id, target_state, reason, wait=wait,
                                                      idempotency_key=idempotency_key, agent_signature=agent_signature,
                                                      signed_at=signed_at, agent_context=agent_context))

    async def result(self, instance_id: str) -> dict[str, Any]:
        """The run's result (PRD-127 PipelineResult fields), computed by the server."""
        return await self.call(ops.result(instance_id))

    async def transitions(self, instance_id: str) -> Transitions:
        """The current state and each transition: available to the caller now, or why not."""
        return await self.call(ops.transitions(instance_id))

    async def agent_actions(self, instance_id: str) -> AgentActions:
        return await self.call(ops.agent_actions(instance_id))

    async def pending(self, limit: int | None = None) -> list[PendingApproval]:
        """Approvals waiting for the caller (the token's principal)."""
        return await self.call(ops.pending(limit))

    # ------------------------------------------------------------------------------------------- agents, ops
    async def get_agent_permissions(self, agent_id: str) -> AgentPermissions:
        return await self.call(ops.get_agent_permissions(agent_id))

    async def set_agent_permissions(self, agent_id: str, *, can_initiate: list[str] | None = None,
                                    can_approve: Mapping[str, Mapping[str, Any]] | None = None) -> AgentPermissions:
        return await self.call(ops.set_agent_permissions(agent_id, can_initiate=can_initiate, can_approve=can_approve))

    async def get_agent_key(self, agent_id: str) -> dict[str, Any]:
        return await self.call(ops.get_agent_key(agent_id))

    async def set_agent_key(self, agent_id: str, public_key: str) -> dict[str, Any]:
        return await self.call(ops.set_agent_key(agent_id, public_key))

    async def agent_access_log(self, agent_id: str, *, conversation_id: str | None = None, cursor: str | None = None,
                               limit: int | None = None) -> dict[str, Any]:
        return await self.call(ops.agent_access_log(agent_id, conversation_id=conversation_id, cursor=cursor,
                                                    limit=limit))

    async def list_agents(self, *, cursor: str | None = None, limit: int | None = None) -> dict[str, Any]:
        return await self.call(ops.list_agents(cursor=cursor, limit=limit))

    async def security_log(self, *, cursor: str | None = None, limit: int | None = None) -> dict[str, Any]:
        return await self.call(ops.security_log(cursor=cursor, limit=limit))

    async def analytics(self, template_id: str | None = None,
                        created_after: datetime | str | None = None) -> dict[str, Any]:
        return await self.call(ops.analytics(template_id, created_after))

    async def me(self) -> dict[str, Any]:
        return await self.call(ops.me())

    async def validate_document(self, document: Mapping[str, Any]) -> ValidationResult:
        return await self.call(ops.validate_document(document))

    async def my_decisions(self, limit: int | None = None) -> dict[str, Any]:
        return await self.call(ops.my_decisions(limit))

    async def throughput(self, template_id: str | None = None, bucket: str | None = None,
                         periods: int | None = None) -> dict[str, Any]:
        return await self.call(ops.throughput(template_id, bucket, periods))

    async def pipeline(self, template_id: str) -> dict[str, Any]:
        return await self.call(ops.pipeline(template_id))

    async def health(self) -> dict[str, Any]:
        return await self.call(ops.health())
