"""The OpenAPI 3.1 document: the single source of the gateway's routes and request schemas.

`gateway.app` registers exactly the operations listed here (by `operationId`), validates request bodies
against the schemas here (template documents go through `core.validation` instead, which reports every
problem with a JSON pointer), and serves the document at `/v1/openapi.json` and as HTML at `/docs`.
"""

from __future__ import annotations

import html
from typing import Any

from core.steps import STEP_KINDS
from core.types import StepType

PROBLEM_CODES = (400, 401, 403, 404, 408, 409, 413, 415, 422, 503)  # 408: slow body; 503: read model down


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema_type: str, **extra: Any) -> dict[str, Any]:
    return {"type": [schema_type, "null"], **extra}


def _step_schema_name(step_type: StepType) -> str:
    return f"{step_type.value.capitalize()}Step"


def _config_schema_name(step_type: StepType) -> str:
    return f"{step_type.value.capitalize()}StepConfig"


def _step_schema(step_type: StepType) -> dict[str, Any]:
    """One variant of `Step`: the common fields, with `config` described by the step type's own schema."""
    return {
        "type": "object", "additionalProperties": False, "required": ["type", "name"],
        "properties": {
            "type": {"type": "string", "const": step_type.value},
            "name": {"type": "string", "minLength": 1}, "id": {"type": "string"},
            "description": {"type": "string"}, "config": ref(_config_schema_name(step_type)),
        },
    }


ANY_JSON: dict[str, Any] = {}
TIMESTAMP = {"type": "string", "format": "date-time"}
OPT_TIMESTAMP = nullable("string", format="date-time")
ACTOR_REF = {"type": "object", "required": ["id", "kind"],
             "properties": {"id": {"type": "string"}, "kind": {"type": "string", "enum": ["human", "agent", "system"]}}}

SCHEMAS: dict[str, Any] = {
    "Problem": {
        "type": "object", "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
            "detail": {"type": "string"}, "instance": {"type": "string"},
            "pointer": {"type": "string", "description": "JSON pointer to the offending field"},
            "errors": {"type": "array", "items": ref("FieldError")},
            "error_id": {"type": "string"}, "command_id": {"type": "string"},
        },
    },
    "FieldError": {"type": "object", "required": ["pointer", "message"],
                   "properties": {"pointer": {"type": "string"}, "message": {"type": "string"}}},
    "TemplateDocument": {
        "type": "object", "additionalProperties": False, "required": ["name"],
        "anyOf": [{"required": ["steps"]}, {"required": ["states"]}],
        "description": "A workflow template (epic 29): validated by core.validation, every problem reported "
                       "with a JSON pointer. Either a step list (`steps`) or a state machine (`states` and "
                       "`transitions`, docs/state-machines.md).",
        "properties": {
            "name": {"type": "string", "minLength": 1}, "description": {"type": "string"},
            "trigger_type": {"type": "string", "enum": ["on_transfer", "event", "manual", "scheduled", "schedule",
                                                        "threshold"]},
            "trigger_config": {"type": "object"},
            "steps": {"type": "array", "minItems": 1, "items": ref("Step")},
            "states": {"type": "array", "minItems": 1, "description": "state-machine template: the first state is "
                       "the initial one", "items": {
                           "type": "object", "required": ["name"], "properties": {
                               "name": {"type": "string", "minLength": 1}, "description": {"type": "string"},
                               "entry_actions": {"type": "array", "items": ref("Step")},
                               "exit_actions": {"type": "array", "items": ref("Step")},
                               "terminal": {"enum": ["COMPLETED", "FAILED", "CANCELLED", True, False]}}}},
            "transitions": {"type": "array", "items": {
                "type": "object", "required": ["from", "to"], "properties": {
                    "from": {"type": "string"}, "to": {"type": "string"}, "description": {"type": "string"},
                    "condition": {"type": "string", "description": "an expression; the transition is available "
                                                                   "only while it holds"},
                    "automatic": {"type": "boolean", "default": False, "description": "taken by the engine once "
                                  "the state's entry actions finished and the condition holds (declared order)"},
                    "action": ref("Step"),
                    "requires_approval": {"type": "object", "description": "an approval step's config (approvers, "
                                          "level, quorum, timeout_hours, escalation...)"},
                    "roles": {"type": "array", "items": {"type": "string"},
                              "description": "who may request it (any of these roles); empty: anyone"},
                    "after_seconds": {"type": "number", "exclusiveMinimum": 0, "description": "time-based: taken by "
                                      "the engine this long after entering `from` (a durable timer; at most one "
                                      "of after_seconds, after_minutes, after_hours, at)"},
                    "after_minutes": {"type": "number", "exclusiveMinimum": 0,
                                      "description": "time-based, in minutes (see after_seconds)"},
                    "after_hours": {"type": "number", "exclusiveMinimum": 0,
                                    "description": "time-based, in hours (see after_seconds)", "examples": [48]},
                    "at": {"oneOf": [{"type": "string"}, {"type": "number"}], "description": "time-based: taken by "
                           "the engine at this deadline: ISO 8601, epoch milliseconds, or a placeholder rendered "
                           "on entering `from`", "examples": ["{{trigger.review_by}}"]}}}},
            "status": {"type": "string", "enum": ["ACTIVE", "DRAFT", "PAUSED"]},
            "metadata": {"type": "object"},
            "settings": {"type": "object", "additionalProperties": False, "properties": {
                "separation_of_duties": {"type": "boolean", "default": True,
                                         "description": "whoever started an instance may not approve it"}}},
        },
    },
    "Step": {
        "description": "A step: its config is described per type (the step type's own schema, core/steps/)",
        "oneOf": [ref(_step_schema_name(t)) for t in STEP_KINDS],
        "discriminator": {"propertyName": "type",
                          "mapping": {t.value: f"#/components/schemas/{_step_schema_name(t)}" for t in STEP_KINDS}},
    },
    **{_step_schema_name(t): _step_schema(t) for t in STEP_KINDS},
    **{_config_schema_name(t): kind.config_schema for t, kind in STEP_KINDS.items()},
    "StepType": {
        "type": "object", "required": ["type", "summary", "handler", "config_schema"],
        "properties": {"type": {"type": "string"}, "summary": {"type": "string"},
                       "handler": nullable("string", description="the handler kind doing its I/O; null when "
                                                                 "the engine decides it alone"),
                       "config_schema": {"type": "object", "description": "a JSON Schema (2020-12)"}},
    },
    "StepTypeList": {"type": "object", "required": ["items"],
                     "properties": {"items": {"type": "array", "items": ref("StepType")}}},
    "Template": {
        "type": "object",
        "required": ["id", "tenant_id", "name", "description", "trigger_type", "status", "version", "created_at",
                     "updated_at", "document"],
        "properties": {
            "id": {"type": "string"}, "tenant_id": {"type": "string"}, "name": {"type": "string"},
            "description": {"type": "string"}, "trigger_type": {"type": "string"},
            "status": {"type": "string", "enum": ["ACTIVE", "DRAFT", "PAUSED"]},
            "version": {"type": "integer", "minimum": 1}, "created_at": TIMESTAMP, "updated_at": TIMESTAMP,
            "document": {"type": "object"},
            "versions": {"type": "array", "items": {"type": "integer"}},
        },
    },
    "TemplateList": {"type": "object", "required": ["items", "next_cursor"],
                     "properties": {"items": {"type": "array", "items": ref("Template")},
                                    "next_cursor": nullable("string")}},
    "ValidationResult": {"type": "object", "required": ["valid", "errors"],
                         "properties": {"valid": {"type": "boolean"},
                                        "errors": {"type": "array", "items": ref("FieldError")}}},
    "SecretInput": {
        "type": "object", "additionalProperties": False, "required": ["name", "value"],
        "properties": {"name": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]{0,99}$"},
                       "value": {"type": "string", "minLength": 1, "maxLength": 8192}},
    },
    "SecretName": {"type": "object", "required": ["name", "created_at", "updated_at"],
                   "properties": {"name": {"type": "string"}, "created_at": TIMESTAMP, "updated_at": TIMESTAMP}},
    "SecretList": {"type": "object", "required": ["items"],
                   "properties": {"items": {"type": "array", "items": ref("SecretName")}}},
    "TriggerInput": {
        "type": "object", "additionalProperties": False, "required": ["template_id"],
        "properties": {
            "template_id": {"type": "string", "minLength": 1, "maxLength": 200},
            "trigger_data": {"type": "object", "description": "what {{trigger.*}} sees"},
            "agent_context": nullable("object", description="agent_id, intent, conversation_id, ..."),
        },
    },
    "DecisionInput": {
        "type": "object", "additionalProperties": False,
        "properties": {
            "decision": {"type": "string", "enum": ["approved", "rejected"],
                         "description": "optional; must match the endpoint"},
            "reasoning": {"type": "string", "maxLength": 4000},
            "agent_signature": {"type": "string", "maxLength": 4096,
                                "description": "base64 Ed25519 signature over the canonical decision "
                                               "(docs/agents.md); checked against the agent's registered key"},
            "signed_at": {"type": "integer", "minimum": 0,
                          "description": "unix seconds the signature covers; required with agent_signature, "
                                         "within 300 s of the gateway's clock (replay window)"},
            "agent_context": nullable("object", description="agents: agent_id, intent, conversation_id for the "
                                                            "audit entry (default: the instance's, if this "
                                                            "agent started it)"),
        },
    },
    "TemplateOverrides": {
        "type": "object", "additionalProperties": False,
        "description": "steps are named by name or 1-based number; every problem is reported with a pointer "
                       "into this document",
        "properties": {
            "name": {"type": "string", "minLength": 1}, "description": {"type": "string"},
            "roles": {"type": "object", "additionalProperties": {"type": "string"},
                      "description": "old role -> new role, in every approver spec"},
            "amounts": {"type": "object", "additionalProperties": {"type": "number"},
                        "description": "condition step -> the number in its expression"},
            "timeouts": {"type": "object", "additionalProperties": {"type": "number"},
                         "description": "step -> hours"},
            "quorum": {"type": "object", "description": "approval step -> level or n (COMMITTEE of n)"},
            "urls": {"type": "object", "additionalProperties": {"type": "string"},
                     "description": "external or webhook step -> url"},
            "trigger_type": {"type": "string"},
        },
    },
    "PipelineResult": {
        "type": "object",
        "required": ["pipeline_id", "run_id", "status", "steps_completed", "steps_failed", "duration", "outputs",
                     "failures", "current_step"],
        "properties": {
            "pipeline_id": {"type": "string"}, "run_id": {"type": "string"}, "status": {"type": "string"},
            "steps_completed": {"type": "array", "items": {"type": "string"}},
            "steps_failed": {"type": "array", "items": {"type": "string"},
                             "description": "steps whose latest attempt failed"},
            "duration": {**nullable("number"), "description": "seconds from start to the last change"},
            "outputs": {"type": "object", "description": "step name -> output (completed steps, no conditions)"},
            "failures": {"type": "array", "description": "every failed attempt, including ones a retry fixed",
                         "items": {"type": "object", "properties": {
                             "step": {"type": "string"}, "number": {"type": "integer"},
                             "attempt": {"type": "integer"}, "error": {"type": "string"}}}},
            "current_step": nullable("string"),
        },
    },
    "TransitionInput": {"type": "object", "additionalProperties": False, "required": ["target_state"],
                        "properties": {"target_state": {"type": "string", "minLength": 1, "maxLength": 200},
                                       "reason": {"type": "string", "maxLength": 4000},
                                       "agent_signature": {"type": "string", "maxLength": 4000, "description":
                                                           "agents: base64 Ed25519 signature over the RFC 8785 "
                                                           "JSON of {instance_id, from_state, to_state, reason, "
                                                           "timestamp} (docs/agents.md); give signed_at too"},
                                       "signed_at": {"type": "integer", "minimum": 0,
                                                     "description": "unix seconds the signature covers"},
                                       "agent_context": {"type": "object", "description": "agents: "
                                                         "{conversation_id, intent, ...} for the audit entry"}}},
    "Transitions": {
        "type": "object", "required": ["instance_id", "state", "transitions"],
        "properties": {
            "instance_id": {"type": "string"}, "actor": ACTOR_REF, "state_machine": {"type": "boolean"},
            "href": {"type": "string"}, "state": nullable("string"), "pending_transition": nullable("string"),
            "transitions": {"type": "array", "items": {
                "type": "object", "required": ["to", "available", "why_not"],
                "properties": {"to": {"type": "string"}, "automatic": {"type": "boolean"},
                               "requires_approval": {"type": "boolean"}, "condition": nullable("string"),
                               "roles": {"type": "array", "items": {"type": "string"}},
                               "available": {"type": "boolean"},
                               "why_not": {**nullable("string"), "description": "condition false, role missing, "
                                           "approval pending, automatic, time-based, or the state's actions "
                                           "still run"},
                               "due_at": {**nullable("integer"), "description": "time-based transitions only: when "
                                          "it falls due (epoch ms); null once it has, or if its `at` did not "
                                          "render to a time"}}}},
        },
    },
    "AgentKeyInput": {
        "type": "object", "additionalProperties": False, "required": ["public_key"],
        "properties": {"public_key": {"type": "string", "minLength": 1, "maxLength": 1000,
                                      "description": "Ed25519 public key: base64 of the 32 raw bytes, or PEM "
                                                     "(SubjectPublicKeyInfo)"}},
    },
    "SecurityLog": {
        "type": "object", "required": ["items", "next_cursor"],
        "properties": {"next_cursor": nullable("string"), "items": {"type": "array", "items": {
            "type": "object", "required": ["at", "kind", "actor_id", "command_type", "instance_id", "reason"],
            "properties": {"at": {"type": "string", "format": "date-time"},
                           "kind": {"type": "string", "enum": ["cross_tenant_command"]},
                           "actor_id": {"type": "string"}, "command_type": {"type": "string"},
                           "instance_id": {"type": "string"}, "reason": {"type": "string"},
                           "command_id": {"type": "string"}}}}},
    },
    "AgentAccessLog": {
        "type": "object", "required": ["agent_id", "items", "next_cursor"],
        "properties": {"agent_id": {"type": "string"}, "next_cursor": nullable("string"), "items": {
            "type": "array", "items": {
                "type": "object", "required": ["at", "operation", "method", "path", "status"],
                "properties": {"at": {"type": "string", "format": "date-time"}, "operation": {"type": "string"},
                               "method": {"type": "string"}, "path": {"type": "string"},
                               "status": {"type": "integer"}, "conversation_id": nullable("string"),
                               "client": nullable("string")}}}},
    },
    "AgentList": {
        "type": "object", "required": ["items", "next_cursor"],
        "properties": {"next_cursor": nullable("string"), "items": {"type": "array", "items": {
            "type": "object", "required": ["id", "display_name", "roles", "has_public_key"],
            "properties": {"id": {"type": "string"}, "display_name": {"type": "string"},
                           "roles": {"type": "array", "items": {"type": "string"}},
                           "has_public_key": {"type": "boolean",
                                              "description": "whether the agent has a registered signing key"}}}}},
    },
    "AgentKey": {
        "type": "object", "required": ["agent_id", "public_key"],
        "properties": {"agent_id": {"type": "string"}, "public_key": nullable("string")},
    },
    "AdvanceInput": {"type": "object", "additionalProperties": False, "required": ["action"],
                     "properties": {"action": {"type": "string", "enum": ["proceed_if_ready"]}}},
    "EscalateInput": {
        "type": "object", "additionalProperties": False,
        "properties": {
            "approvers": {"description": "optional; if given, must be the template's escalation target "
                                         "(on_timeout.approvers or escalate_to): the caller never chooses who "
                                         "decides next",
                          "oneOf": [{"$ref": "#/components/schemas/ApproverSpec"},
                                    {"type": "array", "minItems": 1, "maxItems": 50,
                                     "items": {"$ref": "#/components/schemas/ApproverSpec"}}]},
            "reason": {"type": "string", "maxLength": 2000},
            "timeout_hours": {"type": "number", "exclusiveMinimum": 0, "maximum": 8760,
                              "description": "a new deadline; without it the step has none"},
        },
    },
    "ApproverSpec": {
        "type": "object", "additionalProperties": False, "required": ["type", "value"],
        "properties": {
            "type": {"type": "string", "enum": ["role", "user", "agent"]},
            "value": {"oneOf": [{"type": "string", "minLength": 1, "maxLength": 200},
                                {"type": "array", "minItems": 1, "maxItems": 50,
                                 "items": {"type": "string", "minLength": 1, "maxLength": 200}}]},
        },
    },
    "ReasonInput": {"type": "object", "additionalProperties": False,
                    "properties": {"reason": {"type": "string", "maxLength": 2000}}},
    "EmptyInput": {"type": "object", "additionalProperties": False, "properties": {}},
    "CompleteExternalInput": {
        "type": "object", "additionalProperties": False, "required": ["status"],
        "properties": {"status": {"type": "string", "enum": ["completed", "failed"]}, "result": ANY_JSON},
    },
    "AgentPermissionsInput": {
        "type": "object", "additionalProperties": False, "required": ["workflow_permissions"],
        "properties": {"agent_id": {"type": "string"}, "workflow_permissions": ref("WorkflowPermissions")},
    },
    "WorkflowPermissions": {
        "type": "object", "additionalProperties": False,
        "properties": {
            "can_initiate": {"type": "array", "items": {"type": "string", "minLength": 1}, "maxItems": 500},
            "can_approve": {"type": "object", "maxProperties": 500,
                            "additionalProperties": ref("ApprovalConditions")},
        },
    },
    "ApprovalConditions": {
        "type": "object", "additionalProperties": False,
        "properties": {"max_amount": nullable("number", minimum=0),
                       "step_names": {"type": "array", "items": {"type": "string"}, "maxItems": 100},
                       "currencies": {"type": "array", "items": {"type": "string", "pattern": "^[A-Z]{3}$"},
                                      "maxItems": 50, "description": "the trigger's currency must be one of "
                                                                     "these (empty: any)"},
                       "hours": {"type": "array", "maxItems": 24,
                                 "items": {"type": "string", "pattern": "^[0-9]{2}:[0-9]{2}-[0-9]{2}:[0-9]{2}$"},
                                 "description": "UTC windows HH:MM-HH:MM the agent may decide in (empty: any)"},
                       "counts_toward_quorum": {"type": "boolean", "default": True,
                                                "description": "false: its approvals only add a recommendation"},
                       "escalate_above_limit": {"type": "boolean", "default": True,
                                                "description": "above max_amount its decision is recorded as a "
                                                               "recommendation for the human approvers"},
                       "daily_budget": nullable("number", minimum=0,
                                                description="sum of amounts it may approve per UTC day, across "
                                                            "instances")},
    },
    "AgentPermissions": {
        "type": "object", "required": ["agent_id", "workflow_permissions"],
        "properties": {"agent_id": {"type": "string"}, "workflow_permissions": {
            "type": "object", "required": ["can_initiate", "can_approve"],
            "properties": {"can_initiate": {"type": "array", "items": {"type": "string"}},
                           "can_approve": {"type": "object", "additionalProperties": {
                               "type": "object", "required": ["max_amount", "step_names"],
                               "properties": {"max_amount": nullable("number"),
                                              "step_names": {"type": "array", "items": {"type": "string"}},
                                              "currencies": {"type": "array", "items": {"type": "string"}},
                                              "hours": {"type": "array", "items": {"type": "string"}},
                                              "counts_toward_quorum": {"type": "boolean"},
                                              "escalate_above_limit": {"type": "boolean"},
                                              "daily_budget": nullable("number")}}}}}},
    },
    "CommandAccepted": {
        "type": "object", "required": ["command_id", "instance_id", "status"],
        "properties": {"command_id": {"type": "string"}, "instance_id": {"type": "string"},
                       "status": {"type": "string", "enum": ["accepted"]}},
    },
    "Instance": {
        "type": "object",
        "required": ["id", "tenant_id", "template_id", "template_version", "template_name", "status",
                     "current_step", "current_step_name", "step_count", "trigger", "source", "initiated_by",
                     "agent_context", "blocking", "failure_reason", "created_at", "updated_at", "completed_at",
                     "last_seq"],
        "properties": {
            "id": {"type": "string"}, "tenant_id": {"type": "string"}, "template_id": {"type": "string"},
            "template_version": {"type": "integer"}, "template_name": {"type": "string"},
            "status": {"type": "string", "enum": ["ACTIVE", "PAUSED", "COMPLETED", "CANCELLED", "FAILED"]},
            "current_step": nullable("integer"), "current_step_name": nullable("string"),
            "step_count": {"type": "integer"}, "trigger": ANY_JSON, "source": {"type": "string"},
            "initiated_by": ACTOR_REF, "agent_context": ANY_JSON,
            "blocking": {"type": "object", "description": "where the instance is and what it waits for",
                         "properties": {"waiting_for": nullable("string"), "status": {"type": "string"}}},
            "failure_reason": {"type": "string"}, "created_at": TIMESTAMP, "updated_at": TIMESTAMP,
            "completed_at": OPT_TIMESTAMP, "last_seq": {"type": "integer"},
            "machine_state": {**nullable("string"), "description": "state-machine templates: the current state"},
            "pending_transition": {**nullable("string"), "description": "a requested transition waiting for its "
                                                                         "approval"},
        },
    },
    "StepExecution": {
        "type": "object",
        "required": ["step", "attempt", "name", "type", "status", "awaiting", "started_at", "ended_at", "votes",
                     "approved_by", "approved_by_agent_id", "agent_reasoning", "output", "error", "retries"],
        "properties": {
            "step": {"type": "integer"}, "attempt": {"type": "integer"}, "name": {"type": "string"},
            "type": {"type": "string"}, "status": {"type": "string"}, "awaiting": {"type": "string"},
            "started_at": OPT_TIMESTAMP, "ended_at": OPT_TIMESTAMP, "approvers": ANY_JSON,
            "required": {"type": "integer"}, "votes": {"type": "array", "items": {"type": "object"}},
            "approved_by": {"type": "array", "items": {"type": "string"}},
            "approved_by_agent_id": nullable("string"), "agent_reasoning": nullable("string"),
            "output": ANY_JSON, "error": {"type": "string"}, "retries": {"type": "integer"},
            "external_request": ANY_JSON, "external_response": ANY_JSON,
        },
    },
    "Transition": {
        "type": "object",
        "required": ["seq", "event_type", "step", "command_id", "actor", "reasoning", "details", "at"],
        "properties": {
            "seq": {"type": "integer"}, "event_type": {"type": "string"}, "step": nullable("integer"),
            "command_id": {"type": "string"}, "actor": ACTOR_REF, "reasoning": {"type": "string"},
            "details": {"type": "object"}, "at": TIMESTAMP,
        },
    },
    "InstanceDetail": {
        "allOf": [ref("Instance"), {
            "type": "object", "required": ["steps", "timeline"],
            "properties": {"steps": {"type": "array", "items": ref("StepExecution")},
                           "timeline": {"type": "array", "items": ref("Transition")}}}],
    },
    "InstanceList": {"type": "object", "required": ["items", "next_cursor"],
                     "properties": {"items": {"type": "array", "items": ref("Instance")},
                                    "next_cursor": nullable("string")}},
    "PendingApproval": {
        "type": "object",
        "required": ["instance_id", "template_id", "step", "attempt", "step_name", "kind", "approvers",
                     "required", "approvals", "decided_by", "amount", "deadline", "requested_at", "links"],
        "properties": {
            "instance_id": {"type": "string"}, "template_id": {"type": "string"}, "step": {"type": "integer"},
            "attempt": {"type": "integer"}, "step_name": {"type": "string"},
            "kind": {"type": "string", "enum": ["approval", "review"]}, "approvers": ANY_JSON,
            "required": {"type": "integer"}, "approvals": {"type": "integer"},
            "decided_by": {"type": "array", "items": {"type": "string"}}, "amount": nullable("number"),
            "deadline": OPT_TIMESTAMP, "requested_at": TIMESTAMP,
            "agent_recommendations": {
                "type": "array", "description": "agents' decisions on this step that did not count: above their "
                                                "limit (refusal says why) or recommendation-only agents",
                "items": {"type": "object", "properties": {
                    "agent_id": {"type": "string"}, "decision": {"type": "string", "enum": ["approve", "reject"]},
                    "reasoning": {"type": "string"}, "refusal": {"type": "string"}, "at": TIMESTAMP}}},
            "links": {"type": "object", "properties": {"approve": {"type": "string"}, "reject": {"type": "string"}}},
        },
    },
    "PendingList": {"type": "object", "required": ["items", "next_cursor"],
                    "properties": {"items": {"type": "array", "items": ref("PendingApproval")},
                                   "next_cursor": nullable("string")}},
    "AgentActions": {
        "type": "object", "required": ["instance_id", "actor", "actions"],
        "properties": {
            "instance_id": {"type": "string"}, "actor": ACTOR_REF,
            "actions": {"type": "array", "items": {
                "type": "object", "required": ["action", "method", "href", "description"],
                "properties": {"action": {"type": "string"}, "method": {"type": "string"},
                               "href": {"type": "string"}, "step": {"type": "integer"},
                               "description": {"type": "string"}}}},
        },
    },
    "CallbackUrl": {
        "type": "object",
        "required": ["url", "method", "step", "attempt", "token", "signature_header", "signature_format"],
        "properties": {"url": {"type": "string"}, "method": {"type": "string"}, "step": {"type": "integer"},
                       "attempt": {"type": "integer"}, "token": {"type": "string"},
                       "signature_header": {"type": "string"}, "signature_format": {"type": "string"}},
    },
    "Percentiles": {"type": "object", "required": ["count", "p50", "p90", "p99"],
                    "properties": {"count": {"type": "integer"}, "p50": nullable("number"),
                                   "p90": nullable("number"), "p99": nullable("number")}},
    "StepStat": {"type": "object", "required": ["template_id", "step", "name", "executions", "avg_seconds"],
                 "properties": {"template_id": {"type": "string"}, "step": {"type": "integer"},
                                "name": {"type": "string"}, "executions": {"type": "integer"},
                                "avg_seconds": nullable("number")}},
    "Analytics": {
        "type": "object",
        "required": ["counts_by_status", "completion_time_seconds", "approval_latency_seconds", "busiest_steps",
                     "slowest_steps", "per_template"],
        "properties": {
            "counts_by_status": {"type": "object", "additionalProperties": {"type": "integer"}},
            "completion_time_seconds": ref("Percentiles"), "approval_latency_seconds": ref("Percentiles"),
            "busiest_steps": {"type": "array", "items": ref("StepStat")},
            "slowest_steps": {"type": "array", "items": ref("StepStat")},
            "per_template": {"type": "array", "items": {
                "type": "object", "required": ["template_id", "counts_by_status", "completion_time_seconds"],
                "properties": {"template_id": {"type": "string"},
                               "counts_by_status": {"type": "object", "additionalProperties": {"type": "integer"}},
                               "completion_time_seconds": ref("Percentiles")}}},
        },
    },
    "Me": {
        "type": "object",
        "required": ["id", "tenant_id", "kind", "roles", "display_name", "permissions", "can_initiate"],
        "description": "the signed-in principal; the dashboard shows only what these permissions allow",
        "properties": {"id": {"type": "string"}, "tenant_id": {"type": "string"},
                       "kind": {"type": "string", "enum": ["human", "agent"]},
                       "roles": {"type": "array", "items": {"type": "string"}}, "display_name": {"type": "string"},
                       "permissions": {"type": "array", "items": {"type": "string"}},
                       "can_initiate": nullable("array", items={"type": "string"}, description=(
                           "an agent: the template ids it may start (story 29.12 can_initiate); null for a "
                           "human, who may start any ACTIVE template when `trigger` is among its permissions"))},
    },
    "DecisionList": {
        "type": "object", "required": ["items"],
        "properties": {"items": {"type": "array", "items": {
            "type": "object",
            "required": ["instance_id", "template_id", "template_name", "instance_status", "step", "step_name",
                         "decision", "reasoning", "at"],
            "properties": {"instance_id": {"type": "string"}, "template_id": {"type": "string"},
                           "template_name": {"type": "string"}, "instance_status": {"type": "string"},
                           "step": {"type": "integer"}, "step_name": {"type": "string"},
                           "decision": {"type": "string"}, "reasoning": {"type": "string"}, "at": TIMESTAMP}}}},
    },
    "Throughput": {
        "type": "object", "required": ["bucket", "since", "series", "busiest_approvers"],
        "properties": {
            "bucket": {"type": "string", "enum": ["hour", "day"]}, "since": TIMESTAMP,
            "series": {"type": "array", "items": {
                "type": "object", "required": ["at", "started", "completed", "failed"],
                "properties": {"at": TIMESTAMP, "started": {"type": "integer"}, "completed": {"type": "integer"},
                               "failed": {"type": "integer"}}}},
            "busiest_approvers": {"type": "array", "items": {
                "type": "object", "required": ["approver", "decisions", "p50_seconds"],
                "properties": {"approver": {"type": "string"}, "decisions": {"type": "integer"},
                               "p50_seconds": nullable("number")}}},
        },
    },
    "Pipeline": {
        "type": "object", "required": ["template_id", "name", "steps", "failures"],
        "properties": {
            "template_id": {"type": "string"}, "name": {"type": "string"},
            "steps": {"type": "array", "items": {
                "type": "object", "required": ["step", "name", "type", "counts", "executions", "avg_seconds"],
                "properties": {"step": {"type": "integer"}, "name": {"type": "string"}, "type": {"type": "string"},
                               "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
                               "executions": {"type": "integer"}, "avg_seconds": nullable("number")}}},
            "failures": {"type": "array", "items": {
                "type": "object",
                "required": ["instance_id", "instance_status", "step", "attempt", "name", "status", "error",
                             "ended_at", "retryable"],
                "properties": {"instance_id": {"type": "string"}, "instance_status": {"type": "string"},
                               "step": {"type": "integer"}, "attempt": {"type": "integer"},
                               "name": {"type": "string"}, "status": {"type": "string"},
                               "error": {"type": "string"}, "ended_at": OPT_TIMESTAMP,
                               "retryable": {"type": "boolean"}}}},
        },
    },
    "Health": {
        "type": "object", "required": ["status", "checks"],
        "properties": {"status": {"type": "string", "enum": ["ok", "degraded"]},
                       "checks": {"type": "object", "additionalProperties": {
                           "type": "object", "required": ["ok"], "properties": {"ok": {"type": "boolean"}}}}},
    },
}

ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string", "minLength": 1, "maxLength": 200}}
STEP_N = {"name": "n", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1, "maximum": 100}}
WAIT = {"name": "wait", "in": "query", "required": False, "schema": {"type": "boolean"},
        "description": "wait (at most 10 s) until the read model shows the command's effect; if it does "
                       "not in time, the answer is still 202"}
IDEMPOTENCY = {"name": "Idempotency-Key", "in": "header", "required": False,
               "schema": {"type": "string", "minLength": 1, "maxLength": 200},
               "description": "scoped to the caller: a replay by the same principal with the same key and "
                              "request returns the first response with `Idempotent-Replayed: true`; the same "
                              "key with another request is 422; while the first runs, 409"}
CURSOR = {"name": "cursor", "in": "query", "required": False, "schema": {"type": "string", "maxLength": 500}}
LIMIT = {"name": "limit", "in": "query", "required": False,
         "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}}


def _json_response(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _problems(codes: tuple[int, ...]) -> dict[str, Any]:
    out = {str(c): {"$ref": "#/components/responses/Problem"} for c in codes}
    out["default"] = {"$ref": "#/components/responses/Problem"}
    return out


def op(operation_id: str, summary: str, tag: str, responses: dict[int, tuple[str, dict[str, Any]]], *,
       params: list[dict[str, Any]] | None = None, body: str | None = None, body_required: bool = True,
       public: bool = False, extra_problems: tuple[int, ...] = ()) -> dict[str, Any]:
    operation: dict[str, Any] = {"operationId": operation_id, "summary": summary, "tags": [tag]}
    if params:
        operation["parameters"] = params
    if body:
        operation["requestBody"] = {"required": body_required,
                                    "content": {"application/json": {"schema": ref(body)}}}
        params_post = [*(params or []), IDEMPOTENCY]
        operation["parameters"] = params_post
    out = {str(code): _json_response(desc, schema) for code, (desc, schema) in responses.items()}
    if public:
        operation["security"] = []
        out.update(_problems((*extra_problems,)) if extra_problems else {})
    else:
        out.update(_problems(tuple(sorted({*PROBLEM_CODES, *extra_problems}))))
    operation["responses"] = out
    return operation


INSTANCE = ("the instance after the command took effect (wait=true)", ref("InstanceDetail"))
ACCEPTED = ("the command was sent to the engine", ref("CommandAccepted"))


def _command(operation_id: str, summary: str, body: str, *, step: bool = False,
             body_required: bool = True, extra: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    params = [ID, *([STEP_N] if step else []), WAIT, *(extra or [])]
    return op(operation_id, summary, "decisions", {202: ACCEPTED, 200: INSTANCE}, params=params, body=body,
              body_required=body_required)


PATHS: dict[str, dict[str, Any]] = {
    "/v1/workflows/templates": {
        "post": op("createTemplate", "Create a workflow template (version 1)", "templates",
                   {201: ("created", ref("Template"))}, body="TemplateDocument"),
        "get": op("listTemplates", "List the tenant's templates", "templates",
                  {200: ("templates", ref("TemplateList"))},
                  params=[{"name": "status", "in": "query", "required": False,
                           "schema": {"type": "string", "enum": ["ACTIVE", "DRAFT", "PAUSED"]}}, CURSOR, LIMIT]),
    },
    "/v1/workflows/templates/{id}/instantiate": {
        "post": op("instantiateTemplate", "Create a new template from this one's current document and an override "
                   "document (roles, amounts, timeouts, quorum, urls, name, trigger_type; core/overrides.py)",
                   "templates", {201: ("created", ref("Template"))}, params=[ID], body="TemplateOverrides"),
    },
    "/v1/workflows/step-types": {
        "get": op("listStepTypes", "The step types and each one's config schema (for builders and editors)",
                  "templates", {200: ("step types", ref("StepTypeList"))}),
    },
    "/v1/workflows/templates/{id}": {
        "get": op("getTemplate", "Get a template (current version, or ?version=N)", "templates",
                  {200: ("the template", ref("Template"))},
                  params=[ID, {"name": "version", "in": "query", "required": False,
                               "schema": {"type": "integer", "minimum": 1}}]),
        "put": op("updateTemplate", "Publish a new version; running instances keep theirs", "templates",
                  {200: ("the new version", ref("Template"))}, extra_problems=(409,),
                  params=[ID, {"name": "confirm_secrets", "in": "query", "required": False,
                               "description": "comma-separated secret names this version may send to a new "
                                              "destination (required for each such secret)",
                               "schema": {"type": "string", "maxLength": 2000}}],
                  body="TemplateDocument"),
        "delete": op("deactivateTemplate", "Deactivate: no new instances start (status PAUSED)", "templates",
                     {200: ("deactivated", ref("Template"))}, params=[ID]),
    },
    "/v1/workflows/templates/{id}/validate": {
        "post": op("validateTemplate", "Validate a proposed version against this template's secrets", "templates",
                   {200: ("validation result", ref("ValidationResult"))}, params=[ID], body="TemplateDocument"),
    },
    "/v1/workflows/templates/{id}/secrets": {
        "post": op("setTemplateSecret", "Store (or replace) an encrypted secret; the value is never returned",
                   "templates", {201: ("stored", ref("SecretName"))}, params=[ID], body="SecretInput"),
        "get": op("listTemplateSecrets", "List secret names (never values)", "templates",
                  {200: ("secret names", ref("SecretList"))}, params=[ID]),
    },
    "/v1/workflows/instances": {
        "post": op("triggerInstance", "Start an instance manually (humans with trigger rights, agents with "
                   "can_initiate)", "instances", {202: ACCEPTED, 201: ("started (wait=true)", ref("InstanceDetail"))},
                   params=[WAIT], body="TriggerInput"),
        "get": op("listInstances", "List instances", "instances", {200: ("instances", ref("InstanceList"))},
                  params=[
                      {"name": "status", "in": "query", "required": False, "schema": {
                          "type": "string", "enum": ["ACTIVE", "PAUSED", "COMPLETED", "CANCELLED", "FAILED"]}},
                      {"name": "template_id", "in": "query", "required": False,
                       "schema": {"type": "string", "maxLength": 200}},
                      {"name": "created_after", "in": "query", "required": False,
                       "schema": {"type": "string", "format": "date-time"}},
                      {"name": "created_before", "in": "query", "required": False,
                       "schema": {"type": "string", "format": "date-time"}},
                      {"name": "blocked_on", "in": "query", "required": False,
                       "schema": {"type": "string", "enum": ["me"]}},
                      {"name": "conversation_id", "in": "query", "required": False,
                       "description": "instances whose agent_context.conversation_id is this: one agent "
                                      "conversation across instances",
                       "schema": {"type": "string", "maxLength": 200}},
                      CURSOR, LIMIT]),
    },
    "/v1/workflows/instances/{id}": {
        "get": op("getInstance", "Instance status: current step, who is blocking, full timeline", "instances",
                  {200: ("the instance", ref("InstanceDetail"))}, params=[ID]),
    },
    "/v1/workflows/instances/{id}/steps/{n}/approve": {
        "post": _command("approveStep", "Approve step n", "DecisionInput", step=True, body_required=False),
    },
    "/v1/workflows/instances/{id}/steps/{n}/reject": {
        "post": _command("rejectStep", "Reject step n", "DecisionInput", step=True, body_required=False),
    },
    "/v1/workflows/instances/{id}/steps/{n}/escalate": {
        "post": _command("escalateStep", "Hand a waiting approval to other approvers now (the PRD's escalate); "
                         "its approvers or a workflow_admin may", "EscalateInput", step=True),
    },
    "/v1/workflows/instances/{id}/advance": {
        "post": _command("advanceInstance", "Proceed if the current step is ready", "AdvanceInput"),
    },
    "/v1/workflows/instances/{id}/steps/{n}/complete-external": {
        "post": _command("completeExternal", "Complete an async external step (HMAC-signed callback; one per "
                         "step attempt, a replay answers 409)",
                         "CompleteExternalInput", step=True,
                         extra=[{"name": "X-Flowline-Signature", "in": "header", "required": True,
                                 "schema": {"type": "string"},
                                 "description": "t=<unix seconds>,v1=<hex HMAC-SHA256 of '<t>.<body>' under "
                                                "the step attempt's callback token>"}]),
    },
    "/v1/workflows/{id}/steps/{n}/complete": {
        "post": _command("completeExternalSpecPath", "The same signed callback at the path of story 29.13's "
                         "callback_url pattern ({{payos.webhook_url}}/workflows/{{instance.id}}/steps/n/complete)",
                         "CompleteExternalInput", step=True,
                         extra=[{"name": "X-Flowline-Signature", "in": "header", "required": True,
                                 "schema": {"type": "string"},
                                 "description": "as for complete-external"}]),
    },
    "/v1/workflows/instances/{id}/steps/{n}/callback-url": {
        "get": op("getCallbackUrl", "Callback URL and signing token of an external step's current attempt",
                  "instances", {200: ("callback", ref("CallbackUrl"))}, params=[ID, STEP_N]),
    },
    "/v1/workflows/instances/{id}/transitions": {
        "post": _command("requestTransition", "Request a state-machine transition (humans and agents); one that "
                         "requires approval opens its approval step", "TransitionInput"),
        "get": op("listTransitions", "The current state and each transition: available to the caller now, or "
                  "why not", "instances", {200: ("transitions", ref("Transitions"))}, params=[ID]),
    },
    "/v1/workflows/instances/{id}/result": {
        "get": op("getResult", "What the run did (PRD-127 PipelineResult): steps completed and failed, every failed "
                  "attempt, outputs, duration", "instances", {200: ("result", ref("PipelineResult"))}, params=[ID]),
    },
    "/v1/workflows/instances/{id}/agent-actions": {
        "get": op("listAgentActions", "Actions the caller can take on this instance now", "instances",
                  {200: ("actions", ref("AgentActions"))}, params=[ID]),
    },
    "/v1/workflows/instances/{id}/cancel": {
        "post": _command("cancelInstance", "Cancel the instance", "ReasonInput", body_required=False),
    },
    "/v1/workflows/instances/{id}/pause": {
        "post": _command("pauseInstance", "Pause the instance", "ReasonInput", body_required=False),
    },
    "/v1/workflows/instances/{id}/resume": {
        "post": _command("resumeInstance", "Resume a paused instance", "EmptyInput", body_required=False),
    },
    "/v1/workflows/instances/{id}/steps/{n}/retry": {
        "post": _command("retryStep", "Retry the failed step of a FAILED instance", "EmptyInput", step=True,
                         body_required=False),
    },
    "/v1/workflows/pending": {
        "get": op("listPending", "Approvals waiting for the caller", "instances",
                  {200: ("pending approvals", ref("PendingList"))},
                  params=[{"name": "sort", "in": "query", "required": False,
                           "schema": {"type": "string", "enum": ["requested", "deadline"], "default": "requested"},
                           "description": "requested: oldest request first; deadline: soonest deadline first "
                                          "(approvals without one last)"}, CURSOR, LIMIT]),
    },
    "/v1/agents": {
        "get": op("listAgents", "The tenant's agents, by id (admin only)", "agents",
                  {200: ("the tenant's agents", ref("AgentList"))}, params=[CURSOR, LIMIT]),
    },
    "/v1/agents/{id}/public-key": {
        "get": op("getAgentKey", "An agent's registered Ed25519 public key", "agents",
                  {200: ("the key", ref("AgentKey"))}, params=[ID]),
        "put": op("setAgentKey", "Register (replace) an agent's Ed25519 public key (admin only)", "agents",
                  {200: ("the key", ref("AgentKey"))}, params=[ID], body="AgentKeyInput"),
    },
    "/v1/security-log": {
        "get": op("getSecurityLog", "What the tenant's principals tried against other tenants' instances (refused "
                  "by the engine, kept out of those instances' audit trails), newest first; admins only",
                  "operations", {200: ("the tenant's security log", ref("SecurityLog"))}, params=[CURSOR, LIMIT]),
    },
    "/v1/agents/{id}/access-log": {
        "get": op("getAgentAccessLog", "Every API call the agent made, reads included, newest first (admin, or "
                  "the agent itself)", "agents", {200: ("the agent's calls", ref("AgentAccessLog"))},
                  params=[ID, CURSOR, LIMIT, {"name": "conversation_id", "in": "query", "required": False,
                                              "schema": {"type": "string", "maxLength": 200}}]),
    },
    "/v1/agents/{id}/workflow-permissions": {
        "get": op("getAgentPermissions", "An agent's workflow permissions (story 29.12)", "agents",
                  {200: ("permissions", ref("AgentPermissions"))}, params=[ID]),
        "post": op("setAgentPermissions", "Replace an agent's workflow permissions", "agents",
                   {200: ("permissions", ref("AgentPermissions"))}, params=[ID], body="AgentPermissionsInput"),
    },
    "/v1/workflows/analytics": {
        "get": op("getAnalytics", "Counts, completion times, approval latency, busiest and slowest steps",
                  "analytics", {200: ("analytics", ref("Analytics"))},
                  params=[{"name": "template_id", "in": "query", "required": False,
                           "schema": {"type": "string", "maxLength": 200}},
                          {"name": "created_after", "in": "query", "required": False,
                           "schema": {"type": "string", "format": "date-time"}}]),
    },
    "/v1/me": {
        "get": op("getMe", "The caller: tenant, roles and permissions (the dashboard's sign-in)", "operations",
                  {200: ("the caller", ref("Me"))}),
    },
    "/v1/workflows/templates/validate": {
        "post": op("validateDocument", "Validate a template document that has no id yet (the builder's new "
                   "template); secrets are not checked", "templates",
                   {200: ("validation result", ref("ValidationResult"))}, body="TemplateDocument"),
    },
    "/v1/workflows/decisions": {
        "get": op("listMyDecisions", "The caller's own approval decisions, newest first", "instances",
                  {200: ("decisions", ref("DecisionList"))}, params=[LIMIT]),
    },
    "/v1/workflows/analytics/throughput": {
        "get": op("getThroughput", "Instances started, completed and failed per hour or day; busiest approvers",
                  "analytics", {200: ("throughput", ref("Throughput"))},
                  params=[{"name": "template_id", "in": "query", "required": False,
                           "schema": {"type": "string", "maxLength": 200}},
                          {"name": "bucket", "in": "query", "required": False,
                           "schema": {"type": "string", "enum": ["hour", "day"], "default": "day"}},
                          {"name": "periods", "in": "query", "required": False,
                           "schema": {"type": "integer", "minimum": 1, "maximum": 400, "default": 30}}]),
    },
    "/v1/workflows/templates/{id}/pipeline": {
        "get": op("getPipeline", "One template's steps across its instances: executions by status, average "
                  "time, and the latest failed or timed-out steps with their error", "analytics",
                  {200: ("the pipeline", ref("Pipeline"))}, params=[ID]),
    },
    "/health": {
        "get": op("health", "Broker, database and projector lag", "operations",
                  {200: ("healthy", ref("Health")), 503: ("degraded", ref("Health"))}, public=True),
    },
    "/metrics": {
        "get": {"operationId": "metrics", "summary": "Prometheus metrics", "tags": ["operations"], "security": [],
                "responses": {"200": {"description": "text exposition format",
                                      "content": {"text/plain": {"schema": {"type": "string"}}}}}},
    },
    "/v1/openapi.json": {
        "get": {"operationId": "openapi", "summary": "This document", "tags": ["operations"], "security": [],
                "responses": {"200": _json_response("OpenAPI 3.1 document", {"type": "object"})}},
    },
    "/docs": {
        "get": {"operationId": "docs", "summary": "HTML rendering of this document", "tags": ["operations"],
                "security": [],
                "responses": {"200": {"description": "HTML page",
                                      "content": {"text/html": {"schema": {"type": "string"}}}}}},
    },
}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "Flowline API", "version": "1.0.0",
        "description": "Workflow templates, instances, approvals and agentic composition (epic 29). Every "
                       "error is an RFC 7807 problem document. State changes are commands: they answer 202 "
                       "with a command_id, or with ?wait=true the instance once the read model shows the "
                       "effect.",
    },
    "servers": [{"url": "/"}],
    "security": [{"bearer": []}],
    "tags": [{"name": t} for t in ("templates", "instances", "decisions", "agents", "analytics", "operations")],
    "paths": PATHS,
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                       "description": "an API token (fl_...); stored hashed"}},
        "schemas": SCHEMAS,
        "responses": {"Problem": {"description": "RFC 7807 problem (a 503 because the read model is down "
                                                 "carries Retry-After)",
                                  "headers": {"Retry-After": {"schema": {"type": "integer"},
                                                              "description": "seconds; on 503"}},
                                  "content": {"application/problem+json": {"schema": ref("Problem")}}}},
    },
}

METHODS = ("get", "put", "post", "delete", "patch")


def operations() -> list[tuple[str, str, dict[str, Any]]]:
    """(METHOD, path, operation) for every operation in the document."""
    return [(method.upper(), path, item[method]) for path, item in PATHS.items() for method in METHODS
            if method in item]


def body_schema(operation: dict[str, Any]) -> dict[str, Any] | None:
    """The operation's request schema with every `$ref` resolvable (a self-contained JSON Schema)."""
    body = operation.get("requestBody")
    if not body:
        return None
    schema = body["content"]["application/json"]["schema"]
    return {**schema, "components": {"schemas": SCHEMAS}}


def docs_html() -> str:
    rows = []
    for method, path, operation in operations():
        auth = "public" if operation.get("security") == [] else "bearer"
        body = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
        body_name = body.get("$ref", "").rsplit("/", 1)[-1]
        codes = ", ".join(c for c in operation["responses"] if c != "default")
        rows.append(f"<tr><td><code>{method}</code></td><td><code>{html.escape(path)}</code></td>"
                    f"<td>{html.escape(operation['summary'])}</td><td>{auth}</td>"
                    f"<td>{html.escape(body_name)}</td><td>{codes}</td></tr>")
    schemas = "".join(f"<h3 id='{name}'>{name}</h3><pre>{html.escape(_pretty(schema))}</pre>"
                      for name, schema in SCHEMAS.items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Flowline API</title>
<style>body{{font-family:system-ui,sans-serif;margin:2rem;max-width:1200px}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}}pre{{background:#f6f6f6;
padding:8px;overflow:auto}}</style></head>
<body><h1>Flowline API {DOCUMENT['info']['version']}</h1><p>{html.escape(DOCUMENT['info']['description'])}</p>
<p>Authenticate with <code>Authorization: Bearer &lt;token&gt;</code>. The machine-readable document is
<a href="/v1/openapi.json">/v1/openapi.json</a> (OpenAPI 3.1).</p>
<h2>Operations</h2><table><tr><th>Method</th><th>Path</th><th>Summary</th><th>Auth</th><th>Body</th>
<th>Responses</th></tr>{''.join(rows)}</table><h2>Schemas</h2>{schemas}</body></html>"""


def _pretty(schema: Any) -> str:
    import json

    return json.dumps(schema, indent=2)
