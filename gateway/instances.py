"""Instance endpoints: reads from the read model, and every state change as a command.

Who is blocking comes from `workflow_instances.blocking` and `workflow_pending_approvals`, which the
projector derives from the events (never from the engine's state). Approve/reject/advance/cancel/pause/
resume/retry/complete-external answer 202 with the command id; `?wait=true` waits for the projector.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
import uuid
from typing import Any

import asyncpg
from aiohttp import web
from cachetools import LRUCache

from core import actions as core_actions
from core import commands as cmd
from core.actions import actions_now
from core.actors import ApprovalLimits
from core.machine_run import transitions_now
from core.payments import trigger_refusal
from core.results import pipeline_result
from core.signing import callback_token, verify_payload
from core.template import CompiledTemplate, compile_template, parse_template
from core.triggers import instance_id_for, start_command_id
from gateway import agent_bounds
from gateway.auth import ADVANCE, CALLBACK, DECIDE, OPERATE, READ, TRIGGER, Principal
from gateway.calls import Call, json_response
from gateway.commands import command_id_for, now_ms
from gateway.problems import DATABASE_DOWN, Problem
from gateway.templates import _iso, cursor_time, decode_cursor, encode_cursor
from schemas.notify import ReadModelSignal

SIGNATURE_HEADER = "X-Flowline-Signature"
REF_COLUMNS = "i.id, i.template_id"  # what a command endpoint needs: the instance exists in the caller's tenant
INSTANCE_COLUMNS = """i.id, i.tenant_id, i.template_id, i.template_version, i.template_name, i.status, i.current_step,
    i.current_step_name, i.step_count, i.trigger, i.source, i.initiated_by, i.initiated_by_kind, i.agent_context,
    i.blocking, i.failure_reason, i.created_at, i.updated_at, i.completed_at, i.last_seq, i.machine_state,
    i.pending_transition"""


def _loads(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def instance_json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["id"], "tenant_id": row["tenant_id"], "template_id": row["template_id"],
        "template_version": row["template_version"], "template_name": row["template_name"],
        "status": row["status"], "current_step": row["current_step"], "current_step_name": row["current_step_name"],
        "step_count": row["step_count"], "trigger": _loads(row["trigger"]), "source": row["source"],
        "initiated_by": {"id": row["initiated_by"], "kind": row["initiated_by_kind"]},
        "agent_context": _loads(row["agent_context"]), "blocking": _loads(row["blocking"]) or {},
        "failure_reason": row["failure_reason"], "created_at": _iso(row["created_at"]),
        "updated_at": _iso(row["updated_at"]), "completed_at": _iso(row["completed_at"]),
        "last_seq": row["last_seq"],
        "machine_state": row["machine_state"], "pending_transition": row["pending_transition"],
    }


def step_json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "step": row["step"], "attempt": row["attempt"], "name": row["name"], "type": row["type"],
        "status": row["status"], "awaiting": row["awaiting"], "started_at": _iso(row["started_at"]),
        "ended_at": _iso(row["ended_at"]), "approvers": _loads(row["approvers"]), "required": row["required"],
        "votes": _loads(row["votes"]) or [], "approved_by": list(row["approved_by"] or []),
        "approved_by_agent_id": row["approved_by_agent_id"], "agent_reasoning": row["agent_reasoning"],
        "output": _loads(row["output"]), "error": row["error"], "retries": row["retries"],
        "external_request": _loads(row["external_request"]), "external_response": _loads(row["external_response"]),
    }


def transition_json(row: asyncpg.Record) -> dict[str, Any]:
    return {"seq": row["seq"], "event_type": row["event_type"], "step": row["step"], "command_id": row["command_id"],
            "actor": {"id": row["actor_id"], "kind": row["actor_kind"]}, "reasoning": row["reasoning"],
            "details": _loads(row["details"]) or {}, "at": _iso(row["at"])}


async def load_instance(pool, instance_id: str, tenant_id: str, columns: str = INSTANCE_COLUMNS) -> asyncpg.Record:
    row = await pool.fetchrow(f"SELECT {columns} FROM workflow_instances i WHERE i.id = $1 "
                              "AND i.tenant_id = $2", instance_id, tenant_id)
    if row is None:
        raise Problem(404, f"no instance {instance_id!r}")
    return row


INSTANCE_ID = re.compile(r"wfi_[0-9a-f]{26}")  # what core.triggers.instance_id_for makes, and nothing else


def _lag_wait(gw, instance_id: str) -> float:
    """How long to wait for the projector: only an id the engine could have made can be lagging."""
    return gw.settings.instance_wait_seconds if INSTANCE_ID.fullmatch(instance_id) else 0.0


async def await_row(pool, timeout: float, sql: str, *args: Any,
                    signal: ReadModelSignal | None = None) -> asyncpg.Record | None:
    """`sql`'s first row, re-reading the read model for up to `timeout` seconds while there is none.

    Why: commands are authorised against the read model (the instance must be in the caller's tenant, an
    agent's limits come from the instance's template), and the projector trails the engine by a few hundred
    ms. A client that acts on an `ApprovalRequested` it read from `workflow.events` must not be told that
    the instance does not exist (issue 9.7), so a command waits, bounded, for the projector instead of
    authorising without the read model: the tenant and role checks stay exactly as strict. Unknown and
    other tenants' ids wait the same bound before their 404, so the timing tells nothing either.
    With `signal` listening (schemas/notify.py), it re-reads when the projector commits instead of on a
    polling schedule, so the wait is the projector's lag and no more (issue 15).
    """
    deadline = time.monotonic() + timeout
    pause = 0.02
    while True:
        armed = signal.armed() if signal is not None else None
        row = await pool.fetchrow(sql, *args)
        remaining = deadline - time.monotonic()
        if row is not None or remaining <= 0:
            return row
        if signal is not None and armed is not None and signal.listening:
            await signal.wait(armed, min(0.25, remaining))
        else:
            await asyncio.sleep(min(pause, remaining))
            pause = min(pause * 2, 0.25)


async def command_target(call: Call, columns: str = REF_COLUMNS) -> asyncpg.Record:
    """The instance a command names, in the caller's tenant, waiting (bounded) for the projector."""
    instance_id = call.param("id")
    gw = call.gateway
    row = await await_row(gw.pool, _lag_wait(gw, instance_id),
                          f"SELECT {columns} FROM workflow_instances i WHERE i.id = $1 AND i.tenant_id = $2",
                          instance_id, call.me.tenant_id, signal=gw.projected)
    if row is None:
        raise Problem(404, f"no instance {instance_id!r}")
    return row


# One statement, one round trip, one snapshot: the instance with its step executions and its timeline as
# arrays of table rows (asyncpg decodes each element as a Record with the table's columns, exactly what
# `SELECT *` on the table returns).
DETAIL_SQL = f"""SELECT {INSTANCE_COLUMNS},
    ARRAY(SELECT s FROM workflow_step_executions s WHERE s.instance_id = i.id ORDER BY s.step, s.attempt) AS steps,
    ARRAY(SELECT t FROM workflow_transitions t WHERE t.instance_id = i.id ORDER BY t.seq) AS timeline
    FROM workflow_instances i WHERE i.id = $1 AND i.tenant_id = $2"""


async def instance_detail(pool, instance_id: str, tenant_id: str) -> dict[str, Any]:
    row = await pool.fetchrow(DETAIL_SQL, instance_id, tenant_id)
    if row is None:
        raise Problem(404, f"no instance {instance_id!r}")
    out = instance_json(row)
    out["steps"] = [step_json(s) for s in row["steps"]]
    out["timeline"] = [transition_json(t) for t in row["timeline"]]
    return out


async def get_instance(call: Call) -> web.Response:
    call.me.require(READ, "read instances")
    return json_response(await instance_detail(call.gateway.pool, call.param("id"), call.me.tenant_id))


def approver_predicate(me: Principal, args: list[Any], alias: str = "p", at_ms: int | None = None) -> str:
    """SQL: the pending approval `alias` waits for `me` at `at_ms` (default now): `core.approvers.may_decide`
    in SQL (a parity test, tests/integration/gateway/test_pending_parity.py, holds the two together).

    An agent with an approval permission on the template is judged by that permission's limits alone, even
    where the step names it: the engine applies the limits to every decision of a permitted agent, its
    currency and UTC-hours bounds included (`core.approvers.bounds_refusal`: the trigger's `currency` among
    `currencies`; the minute of the day inside one `hours` window, end exclusive, a window that ends before
    it starts wrapping midnight). Whoever started the instance is left out unless its template version turns
    `settings.separation_of_duties` off or the system started it, as in `core.approvers.refusal`.
    """
    args.append(me.id)
    me_arg = f"${len(args)}"
    args.append(list(me.roles))
    roles_arg = f"${len(args)}"
    member = f"{alias}.approver_roles && {roles_arg}::text[]"
    if me.is_agent:
        permission = (f"SELECT 1 FROM agent_workflow_permissions w WHERE w.agent_id = {me_arg} AND "
                      f"w.template_id = {alias}.template_id AND w.can_approve")
        args.append(((now_ms() if at_ms is None else at_ms) // 60_000) % (24 * 60))
        minute = f"${len(args)}::int"
        within_limits = (f" AND (COALESCE(jsonb_array_length(w.approval_conditions->'step_names'), 0) = 0 OR"
                         f" w.approval_conditions->'step_names' ? {alias}.step_name) AND"
                         f" (w.approval_conditions->>'max_amount' IS NULL OR"
                         f" ({alias}.amount IS NOT NULL AND"
                         f" {alias}.amount <= (w.approval_conditions->>'max_amount')::float8))"
                         f" AND {_bounds_sql(alias, minute)}")
        member = (f"(NOT EXISTS ({permission}) AND ({member} OR {me_arg} = ANY({alias}.approver_agents)))"
                  f" OR EXISTS ({permission}{within_limits})")
    else:
        member += f" OR {me_arg} = ANY({alias}.approver_users)"
    self_allowed = (f"EXISTS (SELECT 1 FROM workflow_instances si LEFT JOIN workflow_template_versions sv"
                    f" ON sv.template_id = si.template_id AND sv.version = si.template_version"
                    f" WHERE si.id = {alias}.instance_id AND (si.initiated_by_kind = 'system' OR"
                    f" sv.document->'settings'->'separation_of_duties' = 'false'::jsonb))")
    # An agent that already recommended on the step may not decide it again (core/steps/approval.py).
    recommended = (f" AND NOT ({alias}.recommendations @> jsonb_build_array(jsonb_build_object('agent_id', "
                   f"{me_arg}::text)))") if me.is_agent else ""
    return (f"(({member}) AND NOT ({me_arg} = ANY({alias}.decided_by)){recommended} AND "
            f"({alias}.initiated_by <> {me_arg} OR {self_allowed}))")


def _hhmm(part: str) -> str:
    """SQL: minutes of the day of one end ('HH:MM') of a window (`core.approvers.parse_window`)."""
    return f"(split_part(trim({part}), ':', 1)::int * 60 + split_part(trim({part}), ':', 2)::int)"


def _bounds_sql(alias: str, minute: str) -> str:
    """SQL over `w.approval_conditions`: `core.approvers.bounds_refusal` is None (currencies, then hours)."""
    currency = f"(SELECT c.trigger->'currency' FROM workflow_instances c WHERE c.id = {alias}.instance_id)"
    start, end = _hhmm("split_part(h.win, '-', 1)"), _hhmm("split_part(h.win, '-', 2)")
    return (f"(COALESCE(jsonb_array_length(w.approval_conditions->'currencies'), 0) = 0 OR"
            f" COALESCE(w.approval_conditions->'currencies' @> jsonb_build_array({currency}), false))"
            f" AND (COALESCE(jsonb_array_length(w.approval_conditions->'hours'), 0) = 0 OR EXISTS ("
            f"SELECT 1 FROM jsonb_array_elements_text(w.approval_conditions->'hours') h(win)"
            f" CROSS JOIN LATERAL (SELECT {start} AS s, {end} AS e) b"
            f" WHERE CASE WHEN b.s < b.e THEN {minute} >= b.s AND {minute} < b.e"
            f" ELSE {minute} >= b.s OR {minute} < b.e END))")


async def list_instances(call: Call) -> web.Response:
    me = call.me
    me.require(READ, "read instances")
    limit = call.query("limit")
    args: list[Any] = [me.tenant_id]
    where = ["i.tenant_id = $1"]
    status = call.query("status")
    if status is not None:
        args.append(status)
        where.append(f"i.status = ${len(args)}")
    template_id = call.query("template_id")
    if template_id is not None:
        args.append(template_id)
        where.append(f"i.template_id = ${len(args)}")
    for name, op in (("created_after", ">"), ("created_before", "<")):
        value = call.query(name)
        if value is not None:
            args.append(value)
            where.append(f"i.created_at {op} ${len(args)}")
    conversation_id = call.query("conversation_id")
    if conversation_id is not None:  # follow one agent conversation across instances (indexed column)
        args.append(conversation_id)
        where.append(f"i.conversation_id = ${len(args)}")
    blocked_on = call.query("blocked_on")
    if blocked_on is not None:  # "me", the only value the document allows
        predicate = approver_predicate(me, args)
        where.append(f"EXISTS (SELECT 1 FROM workflow_pending_approvals p WHERE p.instance_id = i.id AND {predicate})")
    cursor = decode_cursor(call.query("cursor"), 2)
    if cursor:
        args += [cursor_time(cursor[0]), cursor[1]]
        where.append(f"(i.created_at, i.id) < (${len(args) - 1}, ${len(args)})")
    args.append(limit + 1)
    rows = await call.gateway.pool.fetch(
        f"SELECT {INSTANCE_COLUMNS} FROM workflow_instances i WHERE {' AND '.join(where)} "
        f"ORDER BY i.created_at DESC, i.id DESC LIMIT ${len(args)}", *args)
    items = [instance_json(r) for r in rows[:limit]]
    next_cursor = encode_cursor(rows[limit - 1]["created_at"].isoformat(), rows[limit - 1]["id"]) \
        if len(rows) > limit else None
    return json_response({"items": items, "next_cursor": next_cursor})


# ---------------------------------------------------------------------------------------------- commands

async def _answer(call: Call, command: cmd.Command, tenant_id: str, *, sent: bool = False) -> web.Response:
    gw = call.gateway
    if not sent:
        await gw.commands.send(command)
    accepted = {"command_id": command.command_id, "instance_id": command.instance_id, "status": "accepted"}
    if not call.wait:
        return json_response(accepted, 202)
    outcome = await gw.commands.outcome(command.command_id)
    if outcome is None:
        return json_response(accepted, 202)
    if "rejected" in outcome:
        raise Problem(409, f"the engine rejected the command: {outcome['rejected']}", title="Command rejected",
                      command_id=command.command_id)
    try:
        detail = await instance_detail(gw.pool, command.instance_id, tenant_id)
    except DATABASE_DOWN:
        return json_response(accepted, 202)  # sent and applied; the read model went away meanwhile
    return json_response(detail, 201 if isinstance(command, cmd.StartInstance) else 200)


def _approval_limits(conditions: Any) -> ApprovalLimits:
    conditions = _loads(conditions) or {}
    max_amount = conditions.get("max_amount")
    budget = conditions.get("daily_budget")
    return ApprovalLimits(max_amount=float(max_amount) if max_amount is not None else None,
                          step_names=tuple(conditions.get("step_names") or ()),
                          currencies=tuple(conditions.get("currencies") or ()),
                          hours=tuple(conditions.get("hours") or ()),
                          counts_toward_quorum=conditions.get("counts_toward_quorum", True) is not False,
                          escalate_above_limit=conditions.get("escalate_above_limit", True) is not False,
                          daily_budget=float(budget) if budget is not None else None)


async def trigger(call: Call) -> web.Response:
    me = call.me
    me.require(TRIGGER, "start instances")
    body = call.body
    pool = call.gateway.pool
    template = await pool.fetchrow("SELECT id, status, current_version FROM workflow_templates WHERE id = $1 "
                                   "AND tenant_id = $2", body["template_id"], me.tenant_id)
    if template is None:
        raise Problem(404, f"no template {body['template_id']!r}", pointer="/template_id")
    if me.is_agent:
        allowed = await pool.fetchval("SELECT can_initiate FROM agent_workflow_permissions WHERE agent_id = $1 "
                                      "AND template_id = $2", me.id, template["id"])
        if not allowed:
            raise Problem(403, f"agent {me.id} has no can_initiate permission for template {template['id']}")
    if template["status"] != "ACTIVE":
        raise Problem(409, f"template {template['id']} is {template['status']}; only ACTIVE templates start "
                           "instances", pointer="/template_id")
    agent_context = body.get("agent_context")
    if me.is_agent:
        agent_context = dict(agent_context or {})
        claimed = agent_context.setdefault("agent_id", me.id)
        if claimed != me.id:
            raise Problem(422, f"agent_context.agent_id must be the calling agent ({me.id})",
                          pointer="/agent_context/agent_id")
    refusal = trigger_refusal(body.get("trigger_data"))  # core/payments.py: the requester states no absurd amount
    if refusal:
        raise Problem(422, refusal, pointer="/trigger_data/amount")
    # Keys are the caller's own (issue 10.7): another principal's identical key must start its own instance.
    source_key = f"{me.id}\x00{call.idempotency_key}" if call.idempotency_key else uuid.uuid4().hex
    instance_id = instance_id_for(template["id"], "manual:" + source_key)
    command = cmd.StartInstance(
        command_id=start_command_id(instance_id), instance_id=instance_id, issued_at=now_ms(),
        template_id=template["id"], template_version=template["current_version"], tenant_id=me.tenant_id,
        trigger={**(body.get("trigger_data") or {})}, source="manual", initiated_by=me.actor(),
        agent_context=agent_context)
    return await _answer(call, command, me.tenant_id)


DECISION_SQL = """SELECT i.id, i.template_id, i.amount, i.agent_context, w.approval_conditions,
    w.agent_id IS NOT NULL AS can_approve, p.step AS pending_step, p.attempt AS pending_attempt
    FROM workflow_instances i LEFT JOIN agent_workflow_permissions w
      ON w.agent_id = $3 AND w.template_id = i.template_id AND w.can_approve
    LEFT JOIN workflow_pending_approvals p ON p.instance_id = i.id
    WHERE i.id = $1 AND i.tenant_id = $2"""


async def _decision(call: Call, decision: str) -> web.Response:
    me = call.me
    me.require(DECIDE, f"{decision} steps")
    step = call.step()
    instance_id = call.param("id")
    named = call.body.get("decision")
    expected = "approved" if decision == "approve" else "rejected"
    if named is not None and named != expected:
        raise Problem(422, f"this endpoint records {expected!r}; use the other endpoint for {named!r}",
                      pointer="/decision")
    gw = call.gateway
    if not me.is_agent and INSTANCE_ID.fullmatch(instance_id):
        # A person's decision goes to the engine at once, without waiting for the projector (issue 15):
        # everything the read model would check, the engine checks on its own state, which is never behind
        # (core.decide: the actor's tenant must be the instance's, an unknown instance is rejected, the
        # step's approvers are judged by role or id). The answer still comes from the read model: 404
        # for an unknown or another tenant's instance after the same bounded wait, so it tells nothing.
        # The read-model lookup runs while the broker acknowledges the command (the record is in the
        # producer's batch before the lookup starts, so the engine's copy is not delayed): the answer waits
        # for the slower of the two, not their sum. A person needs only the instance's tenant from it
        # (REF_COLUMNS), not the agent's permission and pending-approval joins of DECISION_SQL.
        command = cmd.RecordDecision(
            command_id=command_id_for(call), instance_id=instance_id, issued_at=now_ms(), step=step,
            decision=decision, actor=me.actor(), reasoning=call.body.get("reasoning", ""),
            signature=call.body.get("agent_signature", ""))
        acknowledged = await gw.commands.hand_over(command)
        try:
            instance = await await_row(gw.pool, _lag_wait(gw, instance_id), f"SELECT {REF_COLUMNS} FROM "
                                       "workflow_instances i WHERE i.id = $1 AND i.tenant_id = $2", instance_id,
                                       me.tenant_id, signal=gw.projected)
        except BaseException:
            await asyncio.gather(acknowledged, return_exceptions=True)  # the send's outcome is never dropped
            raise
        await acknowledged  # a 503 (not sent) wins over the lookup's answer
        if instance is None:
            raise Problem(404, f"no instance {instance_id!r}")
        return await _answer(call, command, me.tenant_id, sent=True)
    # The instance and, for an agent, its approval permission on the instance's template: one round trip.
    # An agent's limits live only in the read model, so its decision waits for the projector.
    instance = await await_row(gw.pool, _lag_wait(gw, instance_id), DECISION_SQL, instance_id,
                               me.tenant_id, me.id if me.is_agent else None, signal=gw.projected)
    if instance is None:
        raise Problem(404, f"no instance {instance_id!r}")
    limits = _approval_limits(instance["approval_conditions"]) if instance["can_approve"] else None
    attempt = instance["pending_attempt"] if instance["pending_step"] == step else 0
    verified = await agent_bounds.signature_status(gw.pool, me.id, call.body, instance_id=instance["id"],
                                                   step=step, attempt=attempt or 0, decision=decision)
    command = cmd.RecordDecision(
        command_id=command_id_for(call), instance_id=instance["id"], issued_at=now_ms(), step=step,
        decision=decision, actor=me.actor(limits), reasoning=call.body.get("reasoning", ""),
        signature=call.body.get("agent_signature", ""), signature_status=verified,
        agent_context=_decision_context(me, call.body.get("agent_context"), _loads(instance["agent_context"])))
    amount = instance["amount"]
    if (limits is None or limits.daily_budget is None or decision != "approve" or not limits.counts_toward_quorum
            or amount is None):
        return await _answer(call, command, me.tenant_id)
    day = agent_bounds.today()  # the budget's cross-instance half (gateway/agent_bounds.py)
    await agent_bounds.reserve(gw.pool, me.id, day, amount, limits.daily_budget)
    try:
        return await _answer(call, command, me.tenant_id)
    except Problem as problem:
        if problem.status == 409:  # the engine refused it: the amount was never approved
            await agent_bounds.release(gw.pool, me.id, day, amount)
        raise


def _decision_context(me: Principal, given: Any, instance_context: Any) -> Any:
    """The agent_context an agent's decision carries into the audit trail: the one it gives, else the
    context it started the instance with; always naming the calling agent. Humans carry none."""
    if not me.is_agent:
        return None
    context = dict(given) if isinstance(given, dict) else (
        dict(instance_context) if isinstance(instance_context, dict)
        and instance_context.get("agent_id") == me.id else {})
    if context.get("agent_id", me.id) != me.id:
        raise Problem(422, f"agent_context.agent_id must be the calling agent ({me.id})",
                      pointer="/agent_context/agent_id")
    context["agent_id"] = me.id
    return context


async def approve(call: Call) -> web.Response:
    return await _decision(call, "approve")


async def reject(call: Call) -> web.Response:
    return await _decision(call, "reject")


async def escalate(call: Call) -> web.Response:
    """The engine judges who may escalate (the step's approvers or a workflow_admin): core EscalateApproval."""
    me = call.me
    me.require(DECIDE, "escalate approvals")
    step = call.step()
    instance = await command_target(call)
    body = call.body
    command = cmd.EscalateApproval(
        command_id=command_id_for(call), instance_id=instance["id"], issued_at=now_ms(), step=step,
        approvers=body.get("approvers"), actor=me.actor(), reason=body.get("reason", ""),
        timeout_hours=float(body.get("timeout_hours") or 0))
    return await _answer(call, command, me.tenant_id)


async def advance(call: Call) -> web.Response:
    me = call.me
    me.require(ADVANCE, "advance instances")
    instance = await command_target(call)
    command = cmd.Advance(command_id=command_id_for(call), instance_id=instance["id"], issued_at=now_ms(),
                          actor=me.actor())
    return await _answer(call, command, me.tenant_id)


async def request_transition(call: Call) -> web.Response:
    """POST .../transitions: a human or an agent asks a state-machine instance to move (core RequestTransition;
    the engine judges the transition, its condition, roles and approval: core/machine_run.py)."""
    me = call.me
    # A transition's own `roles` say who may take it (the core judges them), so an approver (cfo, ...) with
    # the decide right may ask, as may operators and agents with the advance right.
    if not me.can(DECIDE):
        me.require(ADVANCE, "request transitions of instances")
    body = call.body
    target = body.get("target_state", body.get("to"))
    if not isinstance(target, str) or not target.strip():
        raise Problem(422, "target_state must name the state to move to", pointer="/target_state")
    reason = body.get("reason", "")
    if not isinstance(reason, str):
        raise Problem(422, "reason must be a string", pointer="/reason")
    instance = await command_target(call, f"{REF_COLUMNS}, i.machine_state, i.agent_context")
    limits = await _agent_limits(call, instance["template_id"])
    verified = "absent"
    if me.is_agent:  # signed over the state the agent saw the instance in (core/agent_signing.py)
        verified = await agent_bounds.transition_signature_status(
            call.gateway.pool, me.id, body, instance_id=instance["id"], from_state=instance["machine_state"] or "",
            to_state=target.strip())
    command = cmd.RequestTransition(
        command_id=command_id_for(call), instance_id=instance["id"], issued_at=now_ms(), target=target.strip(),
        actor=me.actor(limits), reason=reason, signature=body.get("agent_signature") or "",
        signature_status=verified,
        agent_context=_decision_context(me, body.get("agent_context"), _loads(instance["agent_context"])))
    return await _answer(call, command, me.tenant_id)


async def _agent_limits(call: Call, template_id: str) -> ApprovalLimits | None:
    """An agent's approval permission (can_approve bounds) on the template, carried in its Actor so the core
    judges role-restricted transitions by them (core/approvers.py `transition_refusal`); None for a person."""
    me = call.me
    if not me.is_agent:
        return None
    row = await call.gateway.pool.fetchrow(
        "SELECT approval_conditions FROM agent_workflow_permissions WHERE agent_id = $1 AND template_id = $2 "
        "AND can_approve", me.id, template_id)
    return _approval_limits(row["approval_conditions"]) if row is not None else None


# Compiled template versions, most recently used kept: bounded, since every version ever read would else stay
# in memory for the gateway's lifetime (a version never changes, so an entry is never stale).
COMPILED_TEMPLATES_KEPT = 256
_COMPILED: LRUCache[tuple[str, int], CompiledTemplate] = LRUCache(maxsize=COMPILED_TEMPLATES_KEPT)


async def _state_and_template(call: Call) -> tuple[Any, CompiledTemplate]:
    """The instance's folded state (projected) and its compiled template version, in the caller's tenant."""
    me = call.me
    row = await call.gateway.pool.fetchrow(
        "SELECT i.id, i.template_id, i.template_version, i.state, v.document FROM workflow_instances i "
        "JOIN workflow_template_versions v ON v.template_id = i.template_id AND v.version = i.template_version "
        "WHERE i.id = $1 AND i.tenant_id = $2", call.param("id"), me.tenant_id)
    if row is None or not row["state"]:
        raise Problem(404, f"no instance {call.param('id')!r}")
    key = (row["template_id"], row["template_version"])
    template = _COMPILED.get(key)
    if template is None:
        template = _COMPILED[key] = compile_template(parse_template(
            _loads(row["document"]), template_id=row["template_id"], version=row["template_version"],
            tenant_id=me.tenant_id))
    return call.gateway.codec.decode(row["state"]), template


async def list_transitions(call: Call) -> web.Response:
    """GET .../transitions: the current state and each outgoing transition, available to the caller now or why
    not (`core.machine_run.transitions_now` over the projected state and the instance's template version)."""
    me = call.me
    me.require(READ, "read instances")
    state, template = await _state_and_template(call)
    view = transitions_now(state, template, me.actor(await _agent_limits(call, state.template_id)), now_ms())
    base = f"/v1/workflows/instances/{state.instance_id}/transitions"
    return json_response({"instance_id": state.instance_id, "actor": {"id": me.id, "kind": me.kind},
                          "state_machine": template.machine is not None, "href": base, **view})


async def get_result(call: Call) -> web.Response:
    """GET .../result: PRD-127's PipelineResult (`core.results.pipeline_result`) from the projected state and
    every failed attempt in the audit trail."""
    call.me.require(READ, "read instances")
    state, template = await _state_and_template(call)
    rows = await call.gateway.pool.fetch(
        "SELECT step, details FROM workflow_transitions WHERE instance_id = $1 AND event_type = 'StepFailed' "
        "ORDER BY seq", state.instance_id)
    failed = []
    for row in rows:
        details = _loads(row["details"]) or {}
        failed.append((row["step"], int(details.get("attempt") or 0), str(details.get("error") or "")))
    return json_response(pipeline_result(state, template, failed))


async def _operate(call: Call, what: str, build) -> web.Response:
    me = call.me
    me.require(OPERATE, f"{what} instances")
    instance = await command_target(call)
    command = build(command_id=command_id_for(call), instance_id=instance["id"], issued_at=now_ms(),
                    actor=me.actor())
    return await _answer(call, command, me.tenant_id)


async def cancel(call: Call) -> web.Response:
    reason = call.body.get("reason", "")
    return await _operate(call, "cancel", lambda **kw: cmd.CancelInstance(reason=reason, **kw))


async def pause(call: Call) -> web.Response:
    reason = call.body.get("reason", "")
    return await _operate(call, "pause", lambda **kw: cmd.PauseInstance(reason=reason, **kw))


async def resume(call: Call) -> web.Response:
    return await _operate(call, "resume", cmd.ResumeInstance)


async def retry(call: Call) -> web.Response:
    step = call.step()
    return await _operate(call, "retry steps of", lambda **kw: cmd.RetryStep(step=step, **kw))


async def _current_attempt(pool, instance_id: str, step: int, timeout: float = 0.0) -> asyncpg.Record:
    row = await await_row(pool, timeout, "SELECT attempt, type, awaiting, status FROM workflow_step_executions "
                          "WHERE instance_id = $1 AND step = $2 ORDER BY attempt DESC LIMIT 1", instance_id, step)
    if row is None:
        raise Problem(409, f"step {step} has not started", pointer="/path/n")
    if row["type"] and row["type"] != "external":
        raise Problem(409, f"step {step} is a {row['type']} step, not an external step", pointer="/path/n")
    return row


async def _external_attempt(call: Call, what: str) -> tuple[asyncpg.Record, int, int, str]:
    """The instance, step, current attempt and that attempt's callback token of an external step."""
    call.me.require(CALLBACK, what)
    step = call.step()
    gw = call.gateway
    instance = await command_target(call)
    attempt = (await _current_attempt(gw.pool, instance["id"], step, gw.settings.instance_wait_seconds))["attempt"]
    return instance, step, attempt, callback_token(gw.settings.callback_key, instance["id"], step, attempt)


async def complete_external(call: Call) -> web.Response:
    me = call.me
    gw = call.gateway
    instance, step, attempt, token = await _external_attempt(call, "complete external steps")
    signature = call.request.headers.get(SIGNATURE_HEADER, "")
    refusal = verify_payload(token.encode(), call.raw_body, signature, int(time.time()),
                             gw.settings.replay_window_seconds)
    if refusal:
        raise Problem(401, f"{SIGNATURE_HEADER}: {refusal}", pointer=f"/header/{SIGNATURE_HEADER}")
    command = cmd.CompleteExternal(command_id=command_id_for(call), instance_id=instance["id"], issued_at=now_ms(),
                                   step=step, status=call.body["status"], result=call.body.get("result"),
                                   actor=me.actor())
    await _receipt(gw.pool, command, attempt, signature, me.id)
    try:
        await gw.commands.send(command)
    except Problem:
        await gw.pool.execute("DELETE FROM external_callback_receipts WHERE instance_id = $1 AND step = $2 AND "
                              "attempt = $3 AND command_id = $4", instance["id"], step, attempt, command.command_id)
        raise
    return await _answer(call, command, me.tenant_id, sent=True)


async def _receipt(pool, command: cmd.CompleteExternal, attempt: int, signature: str, principal_id: str) -> None:
    """Accept one signed callback per step attempt; a replay of it answers 409 (issue 9.5).

    Why here and not only in the engine: the engine drops a second completion silently, so the caller would
    be told 202 "accepted" for a callback that does nothing. The insert is atomic (ON CONFLICT DO NOTHING),
    so two concurrent replays cannot both pass.
    """
    digest = hashlib.sha256(signature.encode()).hexdigest()
    inserted = await pool.fetchval(
        """INSERT INTO external_callback_receipts (instance_id, step, attempt, signature, command_id, principal_id)
           VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING 1""",
        command.instance_id, command.step, attempt, digest, command.command_id, principal_id)
    if inserted:
        return
    prior = await pool.fetchrow("SELECT signature, received_at FROM external_callback_receipts WHERE "
                                "instance_id = $1 AND step = $2 AND attempt = $3", command.instance_id,
                                command.step, attempt)
    same = prior is not None and prior["signature"] == digest
    raise Problem(409, f"a signed callback for step {command.step} (attempt {attempt}) was already accepted"
                       + (" (this one is a replay of it)" if same else "")
                       + (f" at {_iso(prior['received_at'])}" if prior is not None else ""),
                  title="Callback already applied", step=command.step, attempt=attempt)


async def callback_url(call: Call) -> web.Response:
    gw = call.gateway
    instance, step, attempt, token = await _external_attempt(call, "read callback URLs")
    path = f"/v1/workflows/instances/{instance['id']}/steps/{step}/complete-external"
    return json_response({
        "url": gw.settings.base_url() + path, "method": "POST", "step": step, "attempt": attempt,
        "token": token,
        "signature_header": SIGNATURE_HEADER,
        "signature_format": "t=<unix seconds>,v1=<hex HMAC-SHA256 of '<t>.<raw body>' keyed with token>",
    })


async def agent_actions(call: Call) -> web.Response:
    """The actions open to the caller now: `core.actions.actions_now`, with the API's method and href."""
    me = call.me
    me.require(READ, "read instances")
    pool = call.gateway.pool
    instance = await load_instance(pool, call.param("id"), me.tenant_id)
    base = f"/v1/workflows/instances/{instance['id']}"
    decidable = None
    if instance["status"] == "ACTIVE" and me.can(DECIDE):
        args: list[Any] = [instance["id"]]
        predicate = approver_predicate(me, args)
        pending = await pool.fetchrow(f"SELECT p.step, p.step_name FROM workflow_pending_approvals p "
                                      f"WHERE p.instance_id = $1 AND {predicate}", *args)
        # an agent's limits and currency/hours bounds are in the predicate (judged now)
        decidable = (pending["step"], pending["step_name"]) if pending is not None else None
    may = {right for right, permission in AGENT_ACTION_RIGHTS.items() if me.can(permission)}
    actions = []
    for action in actions_now(instance["status"], may=may, blocking=_loads(instance["blocking"]) or {},
                              current_step=instance["current_step"], decidable=decidable):
        item: dict[str, Any] = {"action": action.action, "method": "POST"}
        if action.step is not None:
            item.update(href=f"{base}/steps/{action.step}/{action.action}", step=action.step)
        else:
            item["href"] = f"{base}/{action.action}"
        item["description"] = action.description
        actions.append(item)
    return json_response({"instance_id": instance["id"], "actor": {"id": me.id, "kind": me.kind},
                          "actions": actions})


AGENT_ACTION_RIGHTS = {core_actions.DECIDE: DECIDE, core_actions.CALLBACK: CALLBACK, core_actions.ADVANCE: ADVANCE,
                       core_actions.OPERATE: OPERATE}




def _pending_page(call: Call, args: list[Any]) -> tuple[str, str]:
    """(extra WHERE condition, ORDER BY) of one page of pending approvals, from `sort` and `cursor`.

    `requested` (default): oldest request first. `deadline`: soonest deadline first, approvals without a
    deadline last. The instance id breaks ties (one pending approval per instance), so pages never
    overlap or skip; a cursor carries the sort key of the last row and is only valid for its own sort.
    """
    sort = call.query("sort")
    cursor = decode_cursor(call.query("cursor"), 2 if sort == "requested" else 3)
    if sort == "requested":
        order = "p.requested_at, p.instance_id"
        if not cursor:
            return "TRUE", order
        args += [cursor_time(cursor[0]), cursor[1]]
        return f"(p.requested_at, p.instance_id) > (${len(args) - 1}, ${len(args)})", order
    order = "p.deadline IS NULL, p.deadline, p.instance_id"
    if not cursor:
        return "TRUE", order
    no_deadline, deadline, instance_id = cursor
    if no_deadline == "1":
        args.append(instance_id)
        return f"(p.deadline IS NULL AND p.instance_id > ${len(args)})", order
    args += [cursor_time(deadline), instance_id]
    return f"(p.deadline IS NULL OR (p.deadline, p.instance_id) > (${len(args) - 1}, ${len(args)}))", order


def _pending_cursor(sort: str, row: asyncpg.Record) -> str:
    if sort == "requested":
        return encode_cursor(row["requested_at"].isoformat(), row["instance_id"])
    deadline = row["deadline"]
    return encode_cursor("1" if deadline is None else "0", deadline.isoformat() if deadline else "",
                         row["instance_id"])


async def pending(call: Call) -> web.Response:
    me = call.me
    me.require(READ, "read pending approvals")
    limit = call.query("limit")
    args: list[Any] = [me.tenant_id]
    predicate = approver_predicate(me, args)
    after, order = _pending_page(call, args)
    args.append(limit + 1)
    rows = await call.gateway.pool.fetch(
        f"""SELECT p.* FROM workflow_pending_approvals p JOIN workflow_instances i ON i.id = p.instance_id
            WHERE p.tenant_id = $1 AND i.status = 'ACTIVE' AND {predicate} AND {after}
            ORDER BY {order} LIMIT ${len(args)}""", *args)
    next_cursor = _pending_cursor(call.query("sort"), rows[limit - 1]) if len(rows) > limit else None
    items = []
    for r in rows[:limit]:
        base = f"/v1/workflows/instances/{r['instance_id']}/steps/{r['step']}"
        items.append({
            "instance_id": r["instance_id"], "template_id": r["template_id"], "step": r["step"],
            "attempt": r["attempt"], "step_name": r["step_name"], "kind": r["kind"],
            "approvers": _loads(r["approvers"]), "required": r["required"], "approvals": r["approvals"],
            "decided_by": list(r["decided_by"] or []), "amount": r["amount"], "deadline": _iso(r["deadline"]),
            "requested_at": _iso(r["requested_at"]),
            "agent_recommendations": _loads(r["recommendations"]) or [],
            "links": {"approve": f"{base}/approve", "reject": f"{base}/reject"},
        })
    return json_response({"items": items, "next_cursor": next_cursor})


HANDLERS = {
    "triggerInstance": trigger,
    "listInstances": list_instances,
    "getInstance": get_instance,
    "approveStep": approve,
    "rejectStep": reject,
    "escalateStep": escalate,
    "advanceInstance": advance,
    "completeExternal": complete_external,
    "completeExternalSpecPath": complete_external,  # one handler: the same signature and replay checks
    "getCallbackUrl": callback_url,
    "listAgentActions": agent_actions,
    "cancelInstance": cancel,
    "pauseInstance": pause,
    "resumeInstance": resume,
    "retryStep": retry,
    "listPending": pending,
    "requestTransition": request_transition,
    "listTransitions": list_transitions,
    "getResult": get_result,
}
