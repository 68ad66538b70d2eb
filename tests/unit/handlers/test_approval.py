"""Approval handler with an in-memory directory and fake senders: who is notified, how, and only once."""

from __future__ import annotations

import json

from core.signing import verify_payload
from handlers.approval import ApprovalHandler, InMemoryApprovalLog, InMemoryDirectory, Principal, resolve
from handlers.notification import DeliveryError, FakeEmailSender, FakeWebhookSender
from tests.unit.handlers.fakes import step_request

NOW = 1_760_000_000
CFO = Principal(id="u_cfo", tenant_id="t1", kind="human", email="cfo@example.com", roles=("cfo",))
CFO2 = Principal(id="u_cfo2", tenant_id="t1", kind="human", email="cfo2@example.com", roles=("cfo", "ceo"))
MANAGER = Principal(id="u_mgr", tenant_id="t1", kind="human", email="mgr@example.com", roles=("finance_manager",))
AGENT = Principal(id="agent_456", tenant_id="t1", kind="agent", webhook_url="https://agent.example/hook",
                  roles=("cfo",))
OTHER_TENANT_CFO = Principal(id="u_x", tenant_id="t2", kind="human", email="x@example.com", roles=("cfo",))
DIRECTORY = [CFO, CFO2, MANAGER, AGENT, OTHER_TENANT_CFO]


def test_role_user_agent_and_list_specs_resolve_against_the_directory():
    cfos = resolve(DIRECTORY, {"type": "role", "value": "cfo"})
    assert [p.id for p in cfos] == ["u_cfo", "u_cfo2", "agent_456", "u_x"]
    assert [p.id for p in resolve(DIRECTORY, {"type": "user", "value": ["u_mgr", "nobody"]})] == ["u_mgr"]
    assert [p.id for p in resolve(DIRECTORY, {"type": "agent", "value": "u_cfo"})] == []
    assert [p.id for p in resolve(DIRECTORY, [{"type": "agent", "value": "agent_456"},
                                              {"type": "role", "value": "finance_manager"}])] == ["agent_456", "u_mgr"]


def handler(webhooks=None, emails=None, log=None):
    return ApprovalHandler(directory=InMemoryDirectory(DIRECTORY), log_store=log or InMemoryApprovalLog(),
                           webhooks=webhooks or FakeWebhookSender(), emails=emails or FakeEmailSender(),
                           signing_key=b"hook-key", public_url="https://flowline.example", clock=lambda: NOW)


async def test_every_resolved_approver_of_the_tenant_is_notified_by_email_or_signed_webhook():
    emails, webhooks = FakeEmailSender(), FakeWebhookSender()
    request = step_request("approval", {"approvers": {"type": "role", "value": "cfo"}, "level": "SINGLE",
                                        "required": 1, "escalation": 0})
    assert await handler(webhooks, emails).handle(request) is None  # decisions complete the step, not us
    assert sorted(e.to[0] for e in emails.sent) == ["cfo2@example.com", "cfo@example.com"]
    assert "https://flowline.example/v1/workflows/instances/wfi_1/steps/2/approve" in emails.sent[0].text
    hook = webhooks.sent[0]
    assert hook.url == "https://agent.example/hook"
    assert json.loads(hook.body)["type"] == "approval_requested"
    assert verify_payload(b"hook-key", hook.body, hook.headers["X-Flowline-Signature"], now=NOW) is None


async def test_an_escalation_sends_escalation_notices_to_the_new_approvers():
    emails = FakeEmailSender()
    request = step_request("approval", {"approvers": {"type": "role", "value": "finance_manager"},
                                        "escalation": 1, "escalated_from": {"type": "role", "value": "cfo"}},
                           suffix=":escalation-1")
    await handler(emails=emails).handle(request)
    assert [e.to[0] for e in emails.sent] == ["mgr@example.com"]
    assert emails.sent[0].subject.startswith("Escalated")


async def test_a_redelivered_request_only_retries_the_notices_that_failed():
    log = InMemoryApprovalLog()
    request = step_request("approval", {"approvers": {"type": "role", "value": "cfo"}})
    broken = FakeWebhookSender(fail_with=DeliveryError("503", retryable=True))
    await handler(broken, FakeEmailSender(), log).handle(request)
    assert log.deliveries[(request.request_id, "agent_456", "webhook")]["status"] == "failed"
    emails, webhooks = FakeEmailSender(), FakeWebhookSender()
    await handler(webhooks, emails, log).handle(request)
    assert emails.sent == [] and len(webhooks.sent) == 1
    assert log.deliveries[(request.request_id, "agent_456", "webhook")]["attempts"] == 2


class CountingPool:
    """The one pool call PostgresDirectory makes, over a list of rows it can change; counts the statements."""

    def __init__(self, rows: list[dict]) -> None:
        self.rows, self.statements = rows, 0

    async def fetch(self, sql: str, tenant_id: str, roles: list[str], ids: list[str]) -> list[dict]:
        self.statements += 1
        return [r for r in self.rows
                if r["tenant_id"] == tenant_id and (set(r["roles"]) & set(roles) or r["id"] in ids)]


def row(p: Principal) -> dict:
    return {"id": p.id, "tenant_id": p.tenant_id, "kind": p.kind, "display_name": p.display_name, "email": p.email,
            "webhook_url": p.webhook_url, "roles": list(p.roles)}


async def test_the_directory_is_read_once_per_spec_and_again_after_its_bound():
    from handlers.approval import PostgresDirectory

    now = [0.0]
    pool = CountingPool([row(CFO), row(MANAGER), row(OTHER_TENANT_CFO)])
    directory = PostgresDirectory(pool, ttl=5.0, timer=lambda: now[0])
    cfo = {"type": "role", "value": "cfo"}
    for _ in range(3):  # every approval of the same step: one statement, not one each
        assert [p.id for p in await directory.principals_for("t1", cfo)] == ["u_cfo"]
    assert pool.statements == 1
    # another tenant or another spec is its own answer
    assert [p.id for p in await directory.principals_for("t2", cfo)] == ["u_x"]
    assert [p.id for p in await directory.principals_for("t1", {"type": "user", "value": "u_mgr"})] == ["u_mgr"]
    assert pool.statements == 3
    # a new CFO is noticed once the bound has passed, not before
    pool.rows.append(row(CFO2))
    now[0] = 4.9
    assert [p.id for p in await directory.principals_for("t1", cfo)] == ["u_cfo"]
    now[0] = 5.1
    assert [p.id for p in await directory.principals_for("t1", cfo)] == ["u_cfo", "u_cfo2"]
    assert pool.statements == 4
