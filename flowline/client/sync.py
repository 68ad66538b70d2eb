"""`Client`: the blocking twin of `AsyncClient`, method for method.

It owns a private event loop and runs the async client on it, so both speak HTTP through the same code
(`operations.Call` executed by `AsyncClient.call`). Use it from scripts and the REPL; inside a running
event loop use `AsyncClient` (a blocking call there would stall the loop, and asyncio refuses it).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from datetime import datetime
from typing import Any, TypeVar

from flowline.client import operations as ops
from flowline.client.aio import AsyncClient
from flowline.client.errors import FlowlineError
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

T = TypeVar("T")


class Client:
    def __init__(self, base_url: str | None = None, token: str | None = None, *, timeout: float = 30.0) -> None:
        self._loop = asyncio.new_event_loop()
        self._async = AsyncClient(base_url, token, timeout=timeout)
        self._owns_loop = True

    @property
    def base_url(self) -> str:
        return self._async.base_url

    @property
    def token(self) -> str | None:
        return self._async.token

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections and the loop (a `with_token` client leaves both to its origin)."""
        if self._owns_loop and not self._loop.is_closed():
            self._loop.run_until_complete(self._async.close())
            self._loop.close()

    def with_token(self, token: str) -> Client:
        """The same server as another principal, sharing this client's loop and connections."""
        other = Client.__new__(Client)
        other._loop, other._async, other._owns_loop = self._loop, self._async.with_token(token), False
        return other

    def _run(self, awaitable: Awaitable[T]) -> T:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return self._loop.run_until_complete(awaitable)
        if asyncio.iscoroutine(awaitable):
            awaitable.close()
        raise FlowlineError("the blocking Client was called inside a running event loop; use AsyncClient there "
                            "(or run the blocking calls in a thread: asyncio.to_thread)")

    def _iterate(self, aiterator: AsyncIterator[T]) -> Iterator[T]:
        while True:
            try:
                yield self._run(aiterator.__anext__())
            except StopAsyncIteration:
                return

    def call(self, call: ops.Call[T]) -> T:
        return self._run(self._async.call(call))

    # ------------------------------------------------------------------------------------------- templates
    def list_templates(self, status: str | None = None, *, cursor: str | None = None,
                       limit: int | None = None) -> Page[Template]:
        return self._run(self._async.list_templates(status, cursor=cursor, limit=limit))

    def iter_templates(self, status: str | None = None, *, page_size: int | None = None) -> Iterator[Template]:
        return self._iterate(self._async.iter_templates(status, page_size=page_size))

    def get_template(self, template_id: str, version: int | None = None) -> Template:
        return self._run(self._async.get_template(template_id, version))

    def template_versions(self, template_id: str) -> list[int]:
        return self._run(self._async.template_versions(template_id))

    def create_template(self, document: Mapping[str, Any], *, idempotency_key: str | None = None) -> Template:
        return self._run(self._async.create_template(document, idempotency_key=idempotency_key))

    def instantiate_template(self, template_id: str, overrides: Mapping[str, Any]) -> Template:
        return self._run(self._async.instantiate_template(template_id, overrides))

    def update_template(self, template_id: str, document: Mapping[str, Any]) -> Template:
        return self._run(self._async.update_template(template_id, document))

    def validate_template(self, template_id: str, document: Mapping[str, Any]) -> ValidationResult:
        return self._run(self._async.validate_template(template_id, document))

    def deactivate_template(self, template_id: str) -> Template:
        return self._run(self._async.deactivate_template(template_id))

    def set_secret(self, template_id: str, name: str, value: str) -> SecretName:
        return self._run(self._async.set_secret(template_id, name, value))

    def list_secrets(self, template_id: str) -> list[SecretName]:
        return self._run(self._async.list_secrets(template_id))

    # ------------------------------------------------------------------------------------------- instances
    def start_instance(self, template_id: str, trigger_data: Mapping[str, Any] | None = None, *,
                       agent_context: Mapping[str, Any] | None = None, wait: bool = False,
                       idempotency_key: str | None = None) -> CommandResult:
        return self._run(self._async.start_instance(template_id, trigger_data, agent_context=agent_context,
                                                    wait=wait, idempotency_key=idempotency_key))

    trigger = start_instance

    def list_instances(self, *, status: str | None = None, template_id: str | None = None,
                       created_after: datetime | str | None = None, created_before: datetime | str | None = None,
                       blocked_on_me: bool = False, cursor: str | None = None,
                       limit: int | None = None) -> Page[Instance]:
        return self._run(self._async.list_instances(status=status, template_id=template_id,
                                                    created_after=created_after, created_before=created_before,
                                                    blocked_on_me=blocked_on_me, cursor=cursor, limit=limit))

    def iter_instances(self, *, status: str | None = None, template_id: str | None = None,
                       created_after: datetime | str | None = None, created_before: datetime | str | None = None,
                       blocked_on_me: bool = False, page_size: int | None = None) -> Iterator[Instance]:
        return self._iterate(self._async.iter_instances(status=status, template_id=template_id,
                                                        created_after=created_after, created_before=created_before,
                                                        blocked_on_me=blocked_on_me, page_size=page_size))

    def get_instance(self, instance_id: str) -> InstanceDetail:
        return self._run(self._async.get_instance(instance_id))

    def timeline(self, instance_id: str) -> list[TimelineEntry]:
        return self._run(self._async.timeline(instance_id))

    def wait_for_instance(self, instance_id: str, until: Callable[[InstanceDetail], bool] | None = None, *,
                          timeout: float = 30.0, interval: float = 0.2) -> InstanceDetail:
        return self._run(self._async.wait_for_instance(instance_id, until, timeout=timeout, interval=interval))

    def approve(self, instance_id: str, step: int, reasoning: str | None = None, *,
                agent_signature: str | None = None, wait: bool = False,
                idempotency_key: str | None = None, signed_at: int | None = None,
               agent_context: dict[str, Any] | None = None) -> CommandResult:
        return self._run(self._async.approve(instance_id, step, reasoning, agent_signature=agent_signature,
                                             wait=wait, idempotency_key=idempotency_key, signed_at=signed_at,
                                             agent_context=agent_context))

    def reject(self, instance_id: str, step: int, reasoning: str | None = None, *,
               agent_signature: str | None = None, wait: bool = False,
               idempotency_key: str | None = None, signed_at: int | None = None,
               agent_context: dict[str, Any] | None = None) -> CommandResult:
        return self._run(self._async.reject(instance_id, step, reasoning, agent_signature=agent_signature,
                                            wait=wait, idempotency_key=idempotency_key, signed_at=signed_at,
                                            agent_context=agent_context))

    def escalate(self, instance_id: str, step: int, approvers: Any = None, *, reason: str | None = None,
                 timeout_hours: float | None = None, wait: bool = False,
                 idempotency_key: str | None = None) -> CommandResult:
        return self._run(self._async.escalate(instance_id, step, approvers, reason=reason,
                                              timeout_hours=timeout_hours, wait=wait,
                                              idempotency_key=idempotency_key))

    def advance(self, instance_id: str, *, wait: bool = False, idempotency_key: str | None = None) -> CommandResult:
        return self._run(self._async.advance(instance_id, wait=wait, idempotency_key=idempotency_key))

    def pause(self, instance_id: str, reason: str | None = None, *, wait: bool = False,
              idempotency_key: str | None = None) -> CommandResult:
        return self._run(self._async.pause(instance_id, reason, wait=wait, idempotency_key=idempotency_key))

    def resume(self, instance_id: str, *, wait: bool = False, idempotency_key: str | None = None) -> CommandResult:
        return self._run(self._async.resume(instance_id, wait=wait, idempotency_key=idempotency_key))

    def cancel(self, instance_id: str, reason: str | None = None, *, wait: bool = False,
               idempotency_key: str | None = None) -> CommandResult:
        return self._run(self._async.cancel(instance_id, reason, wait=wait, idempotency_key=idempotency_key))

    def retry_step(self, instance_id: str, step: int, *, wait: bool = False,
                   idempotency_key: str | None = None) -> CommandResult:
        return self._run(self._async.retry_step(instance_id, step, wait=wait, idempotency_key=idempotency_key))

    def complete_external(self, instance_id: str, step: int, status: str, result: Any = None, *,
                          token: str | None = None, wait: bool = False,
                          idempotency_key: str | None = None) -> CommandResult:
        return self._run(self._async.complete_external(instance_id, step, status, result, token=token, wait=wait,
                                                       idempotency_key=idempotency_key))

    def callback_url(self, instance_id: str, step: int) -> CallbackUrl:
        return self._run(self._async.callback_url(instance_id, step))

    def step_types(self) -> list[dict[str, Any]]:
        return self._run(self._async.step_types())

    def request_transition(self, instance_id: str, target_state: str, reason: str | None = None, *,
                           wait: bool = False, idempotency_key: str | None = None,
                           agent_signature: str | None = None, signed_at: int | None = None,
                           agent_context: dict[str, Any] | None = None) -> CommandResult:
        """Ask a state-machine instance to move to `target_state` (docs/state-machines.md)."""
        return self._run(self._async.request_transition(instance_id, target_state, reason, wait=wait,
                                                        idempotency_key=idempotency_key,
                                                        agent_signature=agent_signature, signed_at=signed_at,
                                                        agent_context=agent_context))

    def result(self, instance_id: str) -> dict[str, Any]:
        return self._run(self._async.result(instance_id))

    def transitions(self, instance_id: str) -> Transitions:
        return self._run(self._async.transitions(instance_id))

    def agent_actions(self, instance_id: str) -> AgentActions:
        return self._run(self._async.agent_actions(instance_id))

    def pending(self, limit: int | None = None) -> list[PendingApproval]:
        return self._run(self._async.pending(limit))

    # ------------------------------------------------------------------------------------------- agents, ops
    def get_agent_permissions(self, agent_id: str) -> AgentPermissions:
        return self._run(self._async.get_agent_permissions(agent_id))

    def set_agent_permissions(self, agent_id: str, *, can_initiate: list[str] | None = None,
                              can_approve: Mapping[str, Mapping[str, Any]] | None = None) -> AgentPermissions:
        return self._run(self._async.set_agent_permissions(agent_id, can_initiate=can_initiate,
                                                           can_approve=can_approve))

    def get_agent_key(self, agent_id: str) -> dict[str, Any]:
        return self._run(self._async.get_agent_key(agent_id))

    def set_agent_key(self, agent_id: str, public_key: str) -> dict[str, Any]:
        return self._run(self._async.set_agent_key(agent_id, public_key))

    def agent_access_log(self, agent_id: str, *, conversation_id: str | None = None, cursor: str | None = None,
                         limit: int | None = None) -> dict[str, Any]:
        return self._run(self._async.agent_access_log(agent_id, conversation_id=conversation_id, cursor=cursor,
                                                      limit=limit))

    def list_agents(self, *, cursor: str | None = None, limit: int | None = None) -> dict[str, Any]:
        return self._run(self._async.list_agents(cursor=cursor, limit=limit))

    def security_log(self, *, cursor: str | None = None, limit: int | None = None) -> dict[str, Any]:
        return self._run(self._async.security_log(cursor=cursor, limit=limit))

    def analytics(self, template_id: str | None = None, created_after: datetime | str | None = None) -> dict[str, Any]:
        return self._run(self._async.analytics(template_id, created_after))

    def me(self) -> dict[str, Any]:
        return self._run(self._async.me())

    def validate_document(self, document: Mapping[str, Any]) -> ValidationResult:
        return self._run(self._async.validate_document(document))

    def my_decisions(self, limit: int | None = None) -> dict[str, Any]:
        return self._run(self._async.my_decisions(limit))

    def throughput(self, template_id: str | None = None, bucket: str | None = None,
                   periods: int | None = None) -> dict[str, Any]:
        return self._run(self._async.throughput(template_id, bucket, periods))

    def pipeline(self, template_id: str) -> dict[str, Any]:
        return self._run(self._async.pipeline(template_id))

    def health(self) -> dict[str, Any]:
        return self._run(self._async.health())
