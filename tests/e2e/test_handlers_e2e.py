"""The engine and the step handlers together on the real broker, against real local servers.

The engine runs in-process (EngineWorld), the external, notification and approval handlers run in-process
through their composition roots, the action handler runs as a separate process so it can be SIGKILLed,
and the payment simulator (development tool) answers payment commands. Instances are started with
StartInstance commands on the world's prefixed topics.

Story 29.13, criterion by criterion: sync call with a secret injected and extracted fields used by a later
condition; retry with backoff, then success; async call completed by a signed callback; timeout of an
async step; on_failure skip / fail_workflow / human_review. Plus a signed webhook, an email, and a
transfer that executes exactly once across a handler crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import asyncpg
import pytest

from core import events as ev
from core.actors import Actor
from core.commands import CompleteExternal, RecordDecision, StartInstance
from core.signing import callback_token, sign_payload, verify_payload
from deploy.payment_simulator import PaymentSimulator, read_ledger
from schemas import topics
from schemas.secrets import SecretBox, store_secret
from tests.integration.engine_harness import REPO, EngineWorld
from tests.integration.handlers.support import Handlers, Receiver, handler_settings, smtp_server

pytestmark = pytest.mark.asyncio(loop_scope="session")

CALLBACK_KEY = b"e2e-callback-key"
HOOK_KEY = b"e2e-webhook-key"
ADMIN = Actor(id="u_admin", roles=("workflow_admin",), tenant_id="t1")


class Flow:
    def __init__(self, world: EngineWorld, erp: Receiver, mailbox, database_url: str) -> None:
        self.world, self.erp, self.mailbox, self.database_url = world, erp, mailbox, database_url

    async def run(self, steps: list[dict], trigger: dict | None = None, *, secrets: dict | None = None) -> str:
        template_id = f"tpl_{uuid.uuid4().hex[:10]}"
        if secrets:
            conn = await asyncpg.connect(self.database_url)
            try:
                for name, value in secrets.items():
                    await store_secret(conn, SecretBox.from_env(), template_id, name, value)
            finally:
                await conn.close()
        await self.world.publish_template(template_id, {"name": template_id, "trigger_type": "manual",
                                                        "steps": steps})
        instance_id = f"wfi_{uuid.uuid4().hex[:12]}"
        await self.world.send_command(StartInstance(command_id=f"start:{instance_id}", instance_id=instance_id,
                                                    template_id=template_id, template_version=1, tenant_id="t1",
                                                    trigger=trigger or {"id": "tr_1", "amount": 120}))
        return instance_id

    def events(self, instance_id: str, kind: type) -> list:
        return [e for e in self.world.events[instance_id] if isinstance(e, kind)]


@pytest.fixture(scope="module")
async def flow(kafka_bootstrap, database_url):
    with smtp_server() as (smtp_port, mailbox):
        async with EngineWorld(kafka_bootstrap, partitions=2) as world, Receiver() as erp:
            await world.start_engine()
            settings = handler_settings(world, database_url, smtp_port=smtp_port, callback_key=CALLBACK_KEY,
                                        webhook_signing_key=HOOK_KEY, smtp_from="flowline@example.com")
            handlers = Handlers()
            for kind in ("external", "notification", "approval"):
                await handlers.start(kind, settings)
            try:
                yield Flow(world, erp, mailbox, database_url)
            finally:
                await handlers.stop()


def external(name: str, **config) -> dict:
    return {"type": "external", "name": name, "config": config}


# ------------------------------------------------------------------------------------------ story 29.13

async def test_a_sync_call_injects_its_secret_and_a_later_condition_reads_the_extracted_fields(flow):
    flow.erp.on("/api/purchase-orders/PO-42", 200, {"total_amount": 900, "status": "open"})
    instance = await flow.run([
        external("Fetch PO", url=f"{flow.erp.url}/api/purchase-orders/{{{{trigger.po_number}}}}",
                 headers={"Authorization": "Bearer {{secrets.erp_api_key}}"}, timeout_seconds=5,
                 success_condition="response.status == 200",
                 extract_fields={"po_amount": "response.body.total_amount", "po_status": "response.body.status"}),
        {"type": "condition", "name": "Big PO", "config": {"expression": "steps.fetch_po.po_amount > 500",
                                                           "if_true": "complete", "if_false": "fail"}},
    ], {"id": "tr_1", "po_number": "PO-42"}, secrets={"erp_api_key": "erp-key-123"})
    await flow.world.wait_for_event(instance, ev.InstanceCompleted)
    [succeeded] = flow.events(instance, ev.StepSucceeded)
    assert succeeded.output == {"status": 200, "po_amount": 900, "po_status": "open"}
    [condition] = flow.events(instance, ev.ConditionEvaluated)
    assert condition.result is True
    call = flow.erp.calls("/api/purchase-orders/PO-42")[0]
    assert call.headers["Authorization"] == "Bearer erp-key-123"
    assert call.headers["Idempotency-Key"] == f"{instance}:1:1"
    assert "erp-key-123" not in repr(flow.world.events[instance])  # never in events


async def test_a_failing_call_is_retried_with_backoff_then_succeeds(flow):
    flow.erp.sequence("/flaky", (503, {"error": "busy"}), (503, {"error": "busy"}), (200, {"ok": True}))
    instance = await flow.run([external("Flaky", url=f"{flow.erp.url}/flaky",
                                         retry_config={"max_retries": 3, "backoff_ms": 300})])
    await flow.world.wait_for_event(instance, ev.InstanceCompleted)
    failures = flow.events(instance, ev.StepFailed)
    assert [f.attempt for f in failures] == [1, 2]
    assert all(f.retry_at > f.at for f in failures)
    assert failures[1].retry_at - failures[1].at >= 2 * (failures[0].retry_at - failures[0].at) * 0.8  # doubles
    [succeeded] = flow.events(instance, ev.StepSucceeded)
    assert succeeded.attempt == 3
    calls = flow.erp.calls("/flaky")
    assert [c.headers["Idempotency-Key"] for c in calls] == [f"{instance}:1:{n}" for n in (1, 2, 3)]


async def test_an_async_call_is_completed_by_a_signed_callback(flow):
    flow.erp.on("/reviews", 202, {"review_id": "rv_1"})
    instance = await flow.run([
        external("Submit to Compliance", url=f"{flow.erp.url}/reviews", method="POST", mode="async",
                 body={"transfer_id": "{{trigger.id}}", "callback_url": "{{callback.url}}"},
                 extract_fields={"risk": "response.body.risk_score"}),
        {"type": "condition", "name": "Low risk", "config": {"expression": "steps.submit_to_compliance.risk < 0.5",
                                                              "if_true": "complete", "if_false": "fail"}},
    ])
    await flow.world.wait_for_event(instance, ev.ExternalCallAccepted)
    call = flow.erp.calls("/reviews")[0]
    url = f"http://127.0.0.1:28700/v1/workflows/instances/{instance}/steps/1/complete-external"
    assert call.headers["X-Flowline-Callback-Url"] == url
    assert json.loads(call.body) == {"transfer_id": "tr_1", "callback_url": url}
    token = call.headers["X-Flowline-Callback-Token"]
    # the compliance system signs its callback with the token; the gateway re-derives and checks it
    body = json.dumps({"status": "completed", "result": {"risk_score": 0.12}}).encode()
    signature = sign_payload(token.encode(), body, int(time.time()))
    expected = callback_token(CALLBACK_KEY, instance, 1, 1)
    assert verify_payload(expected.encode(), body, signature, int(time.time())) is None
    assert verify_payload(b"forged", body, signature, int(time.time())) is not None
    await flow.world.send_command(CompleteExternal(command_id=f"callback:{instance}:1", instance_id=instance,
                                                    step=1, status="completed", result={"risk_score": 0.12}))
    await flow.world.wait_for_event(instance, ev.InstanceCompleted)
    [succeeded] = flow.events(instance, ev.StepSucceeded)
    assert succeeded.output == {"status": 200, "risk": 0.12}


async def test_an_async_call_without_callback_times_out(flow):
    flow.erp.on("/never-calls-back", 202, {})
    instance = await flow.run([external("Silent partner", url=f"{flow.erp.url}/never-calls-back", mode="async",
                                         completion_timeout_hours=0.0005)])  # 1.8 s
    await flow.world.wait_for_event(instance, ev.ExternalCallAccepted)
    failed = await flow.world.wait_for_event(instance, ev.InstanceFailed)
    assert "no completion callback" in failed.reason


@pytest.mark.parametrize("on_failure", ["skip", "fail_workflow", "human_review"])
async def test_on_failure_decides_what_a_final_failure_does(flow, on_failure):
    flow.erp.on(f"/rejects/{on_failure}", 400, {"error": "bad request"})
    instance = await flow.run([
        external("Strict partner", url=f"{flow.erp.url}/rejects/{on_failure}", on_failure=on_failure,
                 review_approvers={"type": "role", "value": "workflow_admin"}),
        {"type": "condition", "name": "After", "config": {"expression": "true", "if_true": "complete"}},
    ])
    if on_failure == "skip":
        await flow.world.wait_for_event(instance, ev.StepSkipped, step=1)
        await flow.world.wait_for_event(instance, ev.InstanceCompleted)
    elif on_failure == "fail_workflow":
        failed = await flow.world.wait_for_event(instance, ev.InstanceFailed)
        assert "HTTP status 400" in failed.reason
    else:
        await flow.world.wait_for_event(instance, ev.HumanReviewRequested, step=1)
        review = await flow.world.wait_for_request(instance, step=1)
        assert review is not None
        await flow.world.send_command(RecordDecision(command_id=f"review:{instance}", instance_id=instance, step=1,
                                                      decision="approve", actor=ADMIN, reasoning="checked by hand"))
        await flow.world.wait_for_event(instance, ev.InstanceCompleted)
    assert len(flow.erp.calls(f"/rejects/{on_failure}")) == 1  # a 400 is not retried


# ------------------------------------------------------------------------------------------ notifications

async def test_a_webhook_notification_arrives_with_a_valid_signature(flow):
    flow.erp.on("/hooks/settled", 200)
    instance = await flow.run([{"type": "notification", "name": "Notify", "config": {
        "channel": "webhook", "url": f"{flow.erp.url}/hooks/settled",
        "body": {"event": "trade.settled", "transfer_id": "{{trigger.id}}"}}}])
    await flow.world.wait_for_event(instance, ev.InstanceCompleted)
    call = flow.erp.calls("/hooks/settled")[0]
    assert json.loads(call.body) == {"event": "trade.settled", "transfer_id": "tr_1"}
    assert verify_payload(HOOK_KEY, call.body, call.headers["X-Flowline-Signature"], int(time.time())) is None
    assert call.headers["Idempotency-Key"] == f"{instance}:1:1"


async def test_an_email_notification_reaches_the_mail_server(flow):
    instance = await flow.run([{"type": "notification", "name": "Mail", "config": {
        "channel": "email", "to": ["ops@example.com"], "subject": "Transfer {{trigger.id}} settled",
        "text": "Amount {{trigger.amount}}"}}])
    await flow.world.wait_for_event(instance, ev.InstanceCompleted)
    mail = next(m for m in flow.mailbox.messages if m["X-Flowline-Idempotency-Key"] == f"{instance}:1:1")
    assert mail["Subject"] == "Transfer tr_1 settled"
    assert "Amount 120" in mail.get_payload()


# ------------------------------------------------------------------------------------------ exactly once

def spawn_action_handler(world: EngineWorld, database_url: str, log_name: str) -> subprocess.Popen:
    env = {**world.env(), "DATABASE_URL": database_url, "FLOWLINE_ALLOW_PRIVATE_NETWORKS": "127.0.0.0/8:*",
           "FLOWLINE_HANDLER_SESSION_TIMEOUT_MS": "6000"}
    (REPO / ".flowline").mkdir(exist_ok=True)
    log = open(REPO / ".flowline" / f"{log_name}.log", "wb")  # noqa: SIM115 - kept open for the child
    return subprocess.Popen([sys.executable, "-m", "handlers", "action"], cwd=REPO, env=env, stdout=log,
                            stderr=subprocess.STDOUT)


async def test_a_transfer_executes_once_when_the_action_handler_dies_before_reporting(flow, tmp_path: Path):
    world = flow.world
    simulator = PaymentSimulator(bootstrap_servers=world.bootstrap, topic_prefix=world.prefix,
                                 ledger=tmp_path / "ledger.jsonl", delay_ms=4000)
    sim_task = asyncio.create_task(simulator.run())
    await world.send_raw(topics.PAYMENTS_TRANSFERS, json.dumps({  # the payment system's record of tr_1
        "event_id": "evt_tr_1", "transfer_id": "tr_1", "tenant_id": "t1", "amount_minor": 12_000,
        "currency": "USD"}).encode(), key=b"evt_tr_1")
    first = spawn_action_handler(world, flow.database_url, "e2e-action-1")
    second = None
    try:
        instance = await flow.run([{"type": "action", "name": "Execute Payment", "config": {
            "action": "execute_transfer", "params": {"transfer_id": "{{trigger.id}}", "amount": "{{trigger.amount}}"},
            "timeout_seconds": 60}}])
        key = f"{instance}:1:v1"  # the payment's key names the step visit, so retries cannot pay twice
        await world.wait_until(lambda: any(e["idempotency_key"] == key for e in read_ledger(simulator.ledger)),
                               timeout=60, message="the simulator executed the transfer")
        os.kill(first.pid, signal.SIGKILL)  # the result is still 4 s away
        first.wait()
        # the one payment command (no lookup first), answered after the handler died
        await world.wait_until(lambda: simulator.answered == 1, message="the simulator answered nobody")
        assert flow.events(instance, ev.StepSucceeded) == []
        second = spawn_action_handler(world, flow.database_url, "e2e-action-2")
        await world.wait_for_event(instance, ev.InstanceCompleted, timeout=60)
        executions = [e for e in read_ledger(simulator.ledger) if e["idempotency_key"] == key]
        assert len(executions) == 1
        # the engine asked once (its order, docs/adr/0023); the restarted handler's relay reported the answer
        # the service gave while it was dead
        assert simulator.commands_seen == 1 and simulator.duplicates == 0
        [succeeded] = flow.events(instance, ev.StepSucceeded)
        assert succeeded.output["payment_id"] == executions[0]["output"]["payment_id"]
        assert succeeded.output["transfer_id"] == "tr_1"
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(20)
                if proc.poll() is None:
                    proc.kill()
        simulator.stop()
        await asyncio.wait_for(sim_task, 20)
