"""Every REST operation as data: which request to send and how to read its answer (no I/O here).

`AsyncClient` and `Client` both execute these `Call`s, so a route, a query parameter or a body shape is
written once. Paths, parameters and bodies follow `gateway/openapi.py`; `tests/unit/sdk` checks that
every operation of that document has a call here.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar
from urllib.parse import quote

from core.signing import sign_payload
from flowline.client.models import (
    AgentActions,
    AgentPermissions,
    CallbackUrl,
    CommandAccepted,
    CommandResult,
    Instance,
    InstanceDetail,
    Page,
    PendingApproval,
    SecretName,
    Template,
    Transitions,
    ValidationResult,
)

T = TypeVar("T")

TEMPLATES = "/v1/workflows/templates"
INSTANCES = "/v1/workflows/instances"


@dataclass(frozen=True)
class Call(Generic[T]):
    method: str
    path: str
    parse: Callable[[int, Any], T]
    params: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    operation_id: str = ""


def _seg(value: str | int) -> str:
    return quote(str(value), safe="")


def _query(**values: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, bool):
            out[key] = "true" if value else "false"
        elif isinstance(value, datetime):
            out[key] = value.isoformat()
        else:
            out[key] = str(value)
    return out


def _post(operation_id: str, path: str, parse: Callable[[int, Any], T], body: Mapping[str, Any] | None, *,
          idempotency_key: str | None = None, params: dict[str, str] | None = None,
          headers: dict[str, str] | None = None) -> Call[T]:
    data = json.dumps(dict(body)).encode() if body is not None else None
    extra = {**(headers or {}), **({"Idempotency-Key": idempotency_key} if idempotency_key else {})}
    return Call("POST", path, parse, params or {}, data, extra, operation_id)


def _command_result(status: int, body: Any) -> CommandResult:
    return CommandAccepted.from_json(body) if status == 202 else InstanceDetail.from_json(body)


def _page(model: Callable[[dict[str, Any]], T]) -> Callable[[int, Any], Page[T]]:
    return lambda _status, body: Page([model(item) for item in body.get("items") or []], body.get("next_cursor"))


def _one(model: Callable[[dict[str, Any]], T]) -> Callable[[int, Any], T]:
    return lambda _status, body: model(body)


def _raw(_status: int, body: Any) -> Any:
    return body


def _without_none(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


# ------------------------------------------------------------------------------------------------ templates

def list_templates(status: str | None = None, cursor: str | None = None,
                   limit: int | None = None) -> Call[Page[Template]]:
    return Call("GET", TEMPLATES, _page(Template.from_json), _query(status=status, cursor=cursor, limit=limit),
                operation_id="listTemplates")


def get_template(template_id: str, version: int | None = None) -> Call[Template]:
    return Call("GET", f"{TEMPLATES}/{_seg(template_id)}", _one(Template.from_json), _query(version=version),
                operation_id="getTemplate")


def create_template(document: Mapping[str, Any], idempotency_key: str | None = None) -> Call[Template]:
    return _post("createTemplate", TEMPLATES, _one(Template.from_json), document, idempotency_key=idempotency_key)


def update_template(template_id: str, document: Mapping[str, Any]) -> Call[Template]:
    return Call("PUT", f"{TEMPLATES}/{_seg(template_id)}", _one(Template.from_json),
                body=json.dumps(dict(document)).encode(), operation_id="updateTemplate")


def deactivate_template(template_id: str) -> Call[Template]:
    return Call("DELETE", f"{TEMPLATES}/{_seg(template_id)}", _one(Template.from_json),
                operation_id="deactivateTemplate")


def validate_template(template_id: str, document: Mapping[str, Any]) -> Call[ValidationResult]:
    return _post("validateTemplate", f"{TEMPLATES}/{_seg(template_id)}/validate", _one(ValidationResult.from_json),
                 document)


def set_secret(template_id: str, name: str, value: str, idempotency_key: str | None = None) -> Call[SecretName]:
    return _post("setTemplateSecret", f"{TEMPLATES}/{_seg(template_id)}/secrets", _one(SecretName.from_json),
                 {"name": name, "value": value}, idempotency_key=idempotency_key)


def list_secrets(template_id: str) -> Call[list[SecretName]]:
    return Call("GET", f"{TEMPLATES}/{_seg(template_id)}/secrets",
                lambda _s, body: [SecretName.from_json(i) for i in body.get("items") or []],
                operation_id="listTemplateSecrets")


# ------------------------------------------------------------------------------------------------ instances

def start_instance(template_id: str, trigger_data: Mapping[str, Any] | None = None, *,
                   agent_context: Mapping[str, Any] | None = None, wait: bool = False,
                   idempotency_key: str | None = None) -> Call[CommandResult]:
    body = _without_none(template_id=template_id, trigger_data=dict(trigger_data or {}),
                         agent_context=dict(agent_context) if agent_context is not None else None)
    return _post("triggerInstance", INSTANCES, _command_result, body, idempotency_key=idempotency_key,
                 params=_query(wait=wait or None))


def list_instances(*, status: str | None = None, template_id: str | None = None,
                   created_after: datetime | str | None = None, created_before: datetime | str | None = None,
                   blocked_on_me: bool = False, cursor: str | None = None,
                   limit: int | None = None) -> Call[Page[Instance]]:
    params = _query(status=status, template_id=template_id, created_after=created_after,
                    created_before=created_before, blocked_on="me" if blocked_on_me else None, cursor=cursor,
                    limit=limit)
    return Call("GET", INSTANCES, _page(Instance.from_json), params, operation_id="listInstances")


def get_instance(instance_id: str) -> Call[InstanceDetail]:
    return Call("GET", f"{INSTANCES}/{_seg(instance_id)}", _one(InstanceDetail.from_json),
                operation_id="getInstance")


def _instance_command(operation_id: str, instance_id: str, action: str, body: Mapping[str, Any] | None, *,
                      step: int | None = None, wait: bool = False, idempotency_key: str | None = None,
                      headers: dict[str, str] | None = None, raw_body: bytes | None = None) -> Call[CommandResult]:
    path = f"{INSTANCES}/{_seg(instance_id)}" + (f"/steps/{int(step)}" if step is not None else "") + f"/{action}"
    call = _post(operation_id, path, _command_result, body, idempotency_key=idempotency_key,
                 params=_query(wait=wait or None), headers=headers)
    if raw_body is not None:
        call = Call(call.method, call.path, call.parse, call.params, raw_body, call.headers, operation_id)
    return call


def approve(instance_id: str, step: int, reasoning: str | None = None, *, agent_signature: str | None = None,
            wait: bool = False, idempotency_key: str | None = None, signed_at: int | None = None,
            agent_context: dict[str, Any] | None = None) -> Call[CommandResult]:
    body = _without_none(decision="approved", reasoning=reasoning, agent_signature=agent_signature, signed_at=signed_at,
                         agent_context=agent_context)
    return _instance_command("approveStep", instance_id, "approve", body, step=step, wait=wait,
                             idempotency_key=idempotency_key)


def reject(instance_id: str, step: int, reasoning: str | None = None, *, agent_signature: str | None = None,
           wait: bool = False, idempotency_key: str | None = None, signed_at: int | None = None,
           agent_context: dict[str, Any] | None = None) -> Call[CommandResult]:
    body = _without_none(decision="rejected", reasoning=reasoning, agent_signature=agent_signature, signed_at=signed_at,
                         agent_context=agent_context)
    return _instance_command("rejectStep", instance_id, "reject", body, step=step, wait=wait,
                             idempotency_key=idempotency_key)


def escalate(instance_id: str, step: int, approvers: Any = None, *, reason: str | None = None,
             timeout_hours: float | None = None, wait: bool = False,
             idempotency_key: str | None = None) -> Call[CommandResult]:
    body = _without_none(approvers=approvers, reason=reason, timeout_hours=timeout_hours)
    return _instance_command("escalateStep", instance_id, "escalate", body, step=step, wait=wait,
                             idempotency_key=idempotency_key)


def advance(instance_id: str, *, wait: bool = False, idempotency_key: str | None = None) -> Call[CommandResult]:
    return _instance_command("advanceInstance", instance_id, "advance", {"action": "proceed_if_ready"}, wait=wait,
                             idempotency_key=idempotency_key)


def cancel(instance_id: str, reason: str | None = None, *, wait: bool = False,
           idempotency_key: str | None = None) -> Call[CommandResult]:
    return _instance_command("cancelInstance", instance_id, "cancel", _without_none(reason=reason), wait=wait,
                             idempotency_key=idempotency_key)


def pause(instance_id: str, reason: str | None = None, *, wait: bool = False,
          idempotency_key: str | None = None) -> Call[CommandResult]:
    return _instance_command("pauseInstance", instance_id, "pause", _without_none(reason=reason), wait=wait,
                             idempotency_key=idempotency_key)


def resume(instance_id: str, *, wait: bool = False, idempotency_key: str | None = None) -> Call[CommandResult]:
    return _instance_command("resumeInstance", instance_id, "resume", {}, wait=wait,
                             idempotency_key=idempotency_key)


def retry_step(instance_id: str, step: int, *, wait: bool = False,
               idempotency_key: str | None = None) -> Call[CommandResult]:
    return _instance_command("retryStep", instance_id, "retry", {}, step=step, wait=wait,
                             idempotency_key=idempotency_key)


def complete_external(instance_id: str, step: int, status: str, result: Any = None, *, token: str,
                      timestamp: int | None = None, wait: bool = False,
                      idempotency_key: str | None = None) -> Call[CommandResult]:
    """The signed callback of an async external step; `token` is the step attempt's callback token
    (from `callback_url`, or the `X-Flowline-Callback-Token` header the external system received)."""
    body = json.dumps(_without_none(status=status, result=result)).encode()
    signature = sign_payload(token.encode(), body, int(time.time()) if timestamp is None else timestamp)
    return _instance_command("completeExternal", instance_id, "complete-external", None, step=step, wait=wait,
                             idempotency_key=idempotency_key, headers={"X-Flowline-Signature": signature},
                             raw_body=body)


def callback_url(instance_id: str, step: int) -> Call[CallbackUrl]:
    return Call("GET", f"{INSTANCES}/{_seg(instance_id)}/steps/{int(step)}/callback-url",
                _one(CallbackUrl.from_json), operation_id="getCallbackUrl")


def instantiate_template(template_id: str, overrides: Mapping[str, Any]) -> Call[Template]:
    return _post("instantiateTemplate", f"{TEMPLATES}/{_seg(template_id)}/instantiate", _one(Template.from_json),
                 dict(overrides))


def request_transition(instance_id: str, target_state: str, reason: str | None = None, *, wait: bool = False,
                       idempotency_key: str | None = None, agent_signature: str | None = None,
                       signed_at: int | None = None, agent_context: dict[str, Any] | None = None,
                       ) -> Call[CommandResult]:
    return _instance_command("requestTransition", instance_id, "transitions",
                             {"target_state": target_state, **_without_none(
                                 reason=reason, agent_signature=agent_signature, signed_at=signed_at,
                                 agent_context=agent_context)}, wait=wait, idempotency_key=idempotency_key)


def result(instance_id: str) -> Call[dict[str, Any]]:
    """The run's PipelineResult as the server computes it (`core.results`), as JSON."""
    return Call("GET", f"{INSTANCES}/{_seg(instance_id)}/result", lambda _s, body: dict(body or {}),
                operation_id="getResult")


def transitions(instance_id: str) -> Call[Transitions]:
    return Call("GET", f"{INSTANCES}/{_seg(instance_id)}/transitions", _one(Transitions.from_json),
                operation_id="listTransitions")


def agent_actions(instance_id: str) -> Call[AgentActions]:
    return Call("GET", f"{INSTANCES}/{_seg(instance_id)}/agent-actions", _one(AgentActions.from_json),
                operation_id="listAgentActions")


def pending(limit: int | None = None) -> Call[list[PendingApproval]]:
    return Call("GET", "/v1/workflows/pending",
                lambda _s, body: [PendingApproval.from_json(i) for i in body.get("items") or []],
                _query(limit=limit), operation_id="listPending")


# ------------------------------------------------------------------------------------------------ agents, ops

def get_agent_permissions(agent_id: str) -> Call[AgentPermissions]:
    return Call("GET", f"/v1/agents/{_seg(agent_id)}/workflow-permissions", _one(AgentPermissions.from_json),
                operation_id="getAgentPermissions")


def get_agent_key(agent_id: str) -> Call[dict[str, Any]]:
    """The agent's registered Ed25519 public key: `{"agent_id", "public_key"}` (docs/agents.md)."""
    return Call("GET", f"/v1/agents/{_seg(agent_id)}/public-key", _raw, operation_id="getAgentKey")


def agent_access_log(agent_id: str, *, conversation_id: str | None = None, cursor: str | None = None,
                     limit: int | None = None) -> Call[dict[str, Any]]:
    """Every API call the agent made, reads included, newest first: `{"agent_id", "items", "next_cursor"}`
    (admin, or the agent itself; docs/agents.md "Audit")."""
    return Call("GET", f"/v1/agents/{_seg(agent_id)}/access-log", _raw,
                params=_query(conversation_id=conversation_id, cursor=cursor, limit=limit),
                operation_id="getAgentAccessLog")


def list_agents(*, cursor: str | None = None, limit: int | None = None) -> Call[dict[str, Any]]:
    """The tenant's agents by id: `{"items": [{"id", "display_name", "roles", "has_public_key"}], "next_cursor"}`
    (admins)."""
    return Call("GET", "/v1/agents", _raw, params=_query(cursor=cursor, limit=limit), operation_id="listAgents")


def security_log(*, cursor: str | None = None, limit: int | None = None) -> Call[dict[str, Any]]:
    """The tenant's principals' attempts on other tenants' instances: `{"items", "next_cursor"}` (admins)."""
    return Call("GET", "/v1/security-log", _raw, params=_query(cursor=cursor, limit=limit),
                operation_id="getSecurityLog")


def set_agent_key(agent_id: str, public_key: str) -> Call[dict[str, Any]]:
    """Register (replace) the agent's Ed25519 public key, base64 of the 32 raw bytes or PEM (admin only)."""
    return Call("PUT", f"/v1/agents/{_seg(agent_id)}/public-key", _raw,
                body=json.dumps({"public_key": public_key}).encode(), operation_id="setAgentKey")


def set_agent_permissions(agent_id: str, *, can_initiate: list[str] | None = None,
                          can_approve: Mapping[str, Mapping[str, Any]] | None = None,
                          idempotency_key: str | None = None) -> Call[AgentPermissions]:
    perms = _without_none(can_initiate=list(can_initiate) if can_initiate is not None else None,
                          can_approve={k: dict(v) for k, v in can_approve.items()} if can_approve is not None else None)
    return _post("setAgentPermissions", f"/v1/agents/{_seg(agent_id)}/workflow-permissions",
                 _one(AgentPermissions.from_json), {"agent_id": agent_id, "workflow_permissions": perms},
                 idempotency_key=idempotency_key)


def analytics(template_id: str | None = None, created_after: datetime | str | None = None) -> Call[dict[str, Any]]:
    return Call("GET", "/v1/workflows/analytics", _raw, _query(template_id=template_id, created_after=created_after),
                operation_id="getAnalytics")


def step_types() -> Call[list[dict[str, Any]]]:
    return Call("GET", "/v1/workflows/step-types", lambda _s, body: list(body.get("items") or []),
                operation_id="listStepTypes")


def me() -> Call[dict[str, Any]]:
    return Call("GET", "/v1/me", _raw, operation_id="getMe")


def validate_document(document: Mapping[str, Any]) -> Call[ValidationResult]:
    """Validate a template that has no id yet (secrets are not checked)."""
    return _post("validateDocument", f"{TEMPLATES}/validate", _one(ValidationResult.from_json), document)


def my_decisions(limit: int | None = None) -> Call[dict[str, Any]]:
    return Call("GET", "/v1/workflows/decisions", _raw, _query(limit=limit), operation_id="listMyDecisions")


def throughput(template_id: str | None = None, bucket: str | None = None,
               periods: int | None = None) -> Call[dict[str, Any]]:
    return Call("GET", "/v1/workflows/analytics/throughput", _raw,
                _query(template_id=template_id, bucket=bucket, periods=periods), operation_id="getThroughput")


def pipeline(template_id: str) -> Call[dict[str, Any]]:
    return Call("GET", f"{TEMPLATES}/{_seg(template_id)}/pipeline", _raw, operation_id="getPipeline")


def health() -> Call[dict[str, Any]]:
    return Call("GET", "/health", _raw, operation_id="health")


def openapi() -> Call[dict[str, Any]]:
    return Call("GET", "/v1/openapi.json", _raw, operation_id="openapi")
