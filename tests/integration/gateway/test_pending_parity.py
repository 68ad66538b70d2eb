"""The gateway's SQL for "pending for me" / "blocked on me" (`approver_predicate`) answers exactly what the
core's approver matching (`core.approvers.may_decide`, the rule the engine judges decisions by) answers:
many pending approvals in the read model, many principals, the same set from both. Template t2 turns
separation of duties off, so there whoever started an instance may approve it too."""

from __future__ import annotations

import itertools
import uuid

import asyncpg
import pytest

from core.actors import Actor, ApprovalLimits
from core.approvers import may_decide, values_of
from core.types import ActorKind
from gateway.auth import Principal
from gateway.instances import approver_predicate
from store.projection import dumps

pytestmark = pytest.mark.asyncio(loop_scope="session")

APPROVERS = [
    {"type": "role", "value": "cfo"},
    {"type": "role", "value": ["cfo", "ops"]},
    {"type": "user", "value": ["u1", "u2"]},
    {"type": "agent", "value": "a1"},
    {"type": "agent", "value": ["a2", "a3"]},
    [{"type": "role", "value": "finance_manager"}, {"type": "user", "value": "u3"}],
    [{"type": "agent", "value": "a2"}, {"type": "role", "value": "ops"}],
]
DECIDED = [[], ["u1"], ["a2", "u3"]]
INITIATORS = ["u9", "u1", "a2"]
AMOUNTS = [None, 1000.0, 10000.0]
STEPS = ["Review", "Pay"]
TEMPLATES = ["t1", "t2"]
SEPARATION = {"t1": True, "t2": False}  # settings.separation_of_duties of each template's version 1
# agent -> template -> approval conditions (can_approve); an agent without a row has no permission there
PERMISSIONS = {
    "a2": {"t1": {"max_amount": 5000}},
    "a3": {"t1": {"step_names": ["Review"]}, "t2": {}},
    "a4": {"t2": {"max_amount": 20000, "step_names": ["Pay"]}},
}
PRINCIPALS = [
    *(Principal(id=f"u{n}", tenant_id="", kind="human", roles=roles)
      for n, roles in enumerate([(), ("cfo",), ("ops",), ("finance_manager",), ("cfo", "ops")], start=1)),
    Principal(id="u9", tenant_id="", kind="human", roles=("cfo",)),
    *(Principal(id=f"a{n}", tenant_id="", kind="agent") for n in range(1, 6)),
]


def _kind(principal_id: str) -> ActorKind:
    return ActorKind.AGENT if principal_id.startswith("a") else ActorKind.HUMAN


def _actor(principal: Principal, template: str) -> Actor:
    conditions = PERMISSIONS.get(principal.id, {}).get(template) if principal.is_agent else None
    limits = None if conditions is None else ApprovalLimits(max_amount=conditions.get("max_amount"),
                                                            step_names=tuple(conditions.get("step_names", ())))
    return principal.actor(limits)


async def test_pending_sql_matches_the_core_approver_rule_for_every_principal(database_url):
    tenant = f"parity_{uuid.uuid4().hex[:8]}"
    template_ids = {t: f"wft_{tenant}_{t}" for t in TEMPLATES}
    rows = list(itertools.product(APPROVERS, DECIDED, INITIATORS, AMOUNTS, STEPS, TEMPLATES))
    conn = await asyncpg.connect(database_url)
    try:
        for template, tid in template_ids.items():
            await conn.execute("INSERT INTO workflow_templates (id, tenant_id, name, trigger_type) "
                               "VALUES ($1, $2, 'parity', 'MANUAL')", tid, tenant)
            settings = {} if SEPARATION[template] else {"settings": {"separation_of_duties": False}}
            await conn.execute("INSERT INTO workflow_template_versions (template_id, version, document) "
                               "VALUES ($1, 1, $2::jsonb)", tid, dumps({"name": "parity", **settings}))
        for agent, grants in PERMISSIONS.items():
            for template, conditions in grants.items():
                await conn.execute(
                    "INSERT INTO agent_workflow_permissions (agent_id, tenant_id, template_id, can_approve, "
                    "approval_conditions) VALUES ($1, $2, $3, true, $4::jsonb)",
                    agent, tenant, template_ids[template], dumps(conditions))
        pending = {}
        for n, (approvers, decided, initiator, amount, step_name, template) in enumerate(rows):
            instance_id = f"wfi_{tenant}_{n}"
            pending[instance_id] = (approvers, decided, initiator, amount, step_name, template)
            await conn.execute(
                "INSERT INTO workflow_instances (id, tenant_id, template_id, template_version, status, initiated_by, "
                "initiated_by_kind, created_at, updated_at) VALUES ($1, $2, $3, 1, 'ACTIVE', $4, $5, now(), now())",
                instance_id, tenant, template_ids[template], initiator, _kind(initiator).value)
            await conn.execute(
                "INSERT INTO workflow_pending_approvals (instance_id, tenant_id, template_id, step, attempt, "
                "step_name, approvers, approver_roles, approver_users, approver_agents, decided_by, initiated_by, "
                "amount, requested_at) VALUES ($1, $2, $3, 2, 1, $4, $5::jsonb, $6, $7, $8, $9, $10, $11, now())",
                instance_id, tenant, template_ids[template], step_name, dumps(approvers),
                values_of(approvers, "role"), values_of(approvers, "user"), values_of(approvers, "agent"),
                decided, initiator, amount)
        matched: dict[str, int] = {}
        for principal in PRINCIPALS:
            args: list = [tenant]
            predicate = approver_predicate(principal, args)
            by_sql = {r["instance_id"] for r in await conn.fetch(
                f"SELECT p.instance_id FROM workflow_pending_approvals p WHERE p.tenant_id = $1 AND {predicate}",
                *args)}
            by_core = {
                instance_id for instance_id, (approvers, decided, initiator, amount, step_name, template)
                in pending.items()
                if may_decide(_actor(principal, template), approvers, decided_by=decided, step_name=step_name,
                              amount=amount, initiator=Actor(id=initiator, kind=_kind(initiator)),
                              separation_of_duties=SEPARATION[template])
            }
            differ = [(pending[i], i in by_sql) for i in sorted(by_sql ^ by_core)[:3]]
            assert by_sql == by_core, (principal.id, differ)
            matched[principal.id] = len(by_core)
        assert len(pending) == len(rows) == 756
        assert {p for p, n in matched.items() if n == 0} == {"a5"}  # named nowhere, no permission
    finally:
        await conn.execute("DELETE FROM workflow_pending_approvals WHERE tenant_id = $1", tenant)
        await conn.execute("DELETE FROM workflow_instances WHERE tenant_id = $1", tenant)
        await conn.execute("DELETE FROM workflow_template_versions WHERE template_id LIKE $1", f"wft_{tenant}_%")
        await conn.execute("DELETE FROM agent_workflow_permissions WHERE tenant_id = $1", tenant)
        await conn.execute("DELETE FROM workflow_templates WHERE tenant_id = $1", tenant)
        await conn.close()


# An agent's currency and UTC-hours bounds (issue 14 residual): the pending list applies them in SQL too.
BOUNDED = {
    "b1": {"currencies": ["USD"]},
    "b2": {"hours": ["08:00-18:00"]},
    "b3": {"hours": ["22:00-06:00", "12:00-12:30"], "currencies": ["EUR", "USD"]},
    "b4": {},
    "b5": {"max_amount": 5000, "currencies": ["EUR"]},
}
CURRENCIES = [None, "USD", "EUR", 5]
MINUTES = [0, 30, 8 * 60, 12 * 60 + 29, 12 * 60 + 30, 17 * 60 + 59, 18 * 60, 21 * 60 + 59, 22 * 60, 23 * 60 + 59]
DAY_MS = 1_767_225_600_000  # 2026-01-01T00:00Z


async def test_pending_sql_applies_an_agents_currency_and_hours_bounds_like_the_core(database_url):
    tenant = f"bounds_{uuid.uuid4().hex[:8]}"
    tid = f"wft_{tenant}"
    approvers = {"type": "role", "value": "cfo"}
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("INSERT INTO workflow_templates (id, tenant_id, name, trigger_type) "
                           "VALUES ($1, $2, 'bounds', 'MANUAL')", tid, tenant)
        await conn.execute("INSERT INTO workflow_template_versions (template_id, version, document) "
                           "VALUES ($1, 1, $2::jsonb)", tid, dumps({"name": "bounds"}))
        for agent, conditions in BOUNDED.items():
            await conn.execute(
                "INSERT INTO agent_workflow_permissions (agent_id, tenant_id, template_id, can_approve, "
                "approval_conditions) VALUES ($1, $2, $3, true, $4::jsonb)", agent, tenant, tid, dumps(conditions))
        pending = {}
        for n, (currency, amount) in enumerate(itertools.product(CURRENCIES, AMOUNTS)):
            instance_id = f"wfi_{tenant}_{n}"
            trigger = {"amount": amount} if currency is None else {"amount": amount, "currency": currency}
            pending[instance_id] = (currency, amount)
            await conn.execute(
                "INSERT INTO workflow_instances (id, tenant_id, template_id, template_version, status, initiated_by, "
                "initiated_by_kind, trigger, created_at, updated_at) VALUES ($1, $2, $3, 1, 'ACTIVE', 'u9', 'human', "
                "$4::jsonb, now(), now())", instance_id, tenant, tid, dumps(trigger))
            await conn.execute(
                "INSERT INTO workflow_pending_approvals (instance_id, tenant_id, template_id, step, attempt, "
                "step_name, approvers, approver_roles, approver_users, approver_agents, decided_by, initiated_by, "
                "amount, requested_at) VALUES ($1, $2, $3, 1, 1, 'Review', $4::jsonb, $5, '{}', '{}', '{}', 'u9', "
                "$6, now())", instance_id, tenant, tid, dumps(approvers), ["cfo"], amount)
        seen = set()
        for agent, conditions in BOUNDED.items():
            principal = Principal(id=agent, tenant_id="", kind="agent")
            actor = principal.actor(ApprovalLimits(max_amount=conditions.get("max_amount"),
                                                   currencies=tuple(conditions.get("currencies", ())),
                                                   hours=tuple(conditions.get("hours", ()))))
            for minute in MINUTES:
                at = DAY_MS + minute * 60_000
                args: list = [tenant]
                predicate = approver_predicate(principal, args, at_ms=at)
                by_sql = {r["instance_id"] for r in await conn.fetch(
                    f"SELECT p.instance_id FROM workflow_pending_approvals p WHERE p.tenant_id = $1 AND {predicate}",
                    *args)}
                by_core = {i for i, (currency, amount) in pending.items()
                           if may_decide(actor, approvers, decided_by=[], step_name="Review", amount=amount,
                                         initiator=Actor(id="u9"), currency=currency, at=at)}
                assert by_sql == by_core, (agent, minute, sorted(by_sql ^ by_core)[:3])
                seen.add(len(by_core))
        assert 0 in seen and len(pending) in seen and len(seen) > 3  # the bounds cut, and not all-or-nothing
    finally:
        await conn.execute("DELETE FROM workflow_pending_approvals WHERE tenant_id = $1", tenant)
        await conn.execute("DELETE FROM workflow_instances WHERE tenant_id = $1", tenant)
        await conn.execute("DELETE FROM workflow_template_versions WHERE template_id = $1", tid)
        await conn.execute("DELETE FROM agent_workflow_permissions WHERE tenant_id = $1", tenant)
        await conn.execute("DELETE FROM workflow_templates WHERE tenant_id = $1", tenant)
        await conn.close()
