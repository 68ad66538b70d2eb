"""The engine on the real broker: triggers, decisions, handler results, timers, redelivery, poison records."""

from __future__ import annotations

import asyncio
import time

import pytest

from core import events as ev
from core.actors import Actor
from core.builtin import builtin_template
from core.commands import RecordDecision, RecordPaymentResult, ReportStepResult, StartInstance
from schemas import topics
from schemas.records import TransferEvent
from tests.integration.engine_harness import EngineWorld

pytestmark = pytest.mark.asyncio(loop_scope="session")

CFO = Actor(id="u_cfo", roles=("cfo",), tenant_id="t1")
MANAGER = Actor(id="u_manager", roles=("finance_manager",), tenant_id="t1")


def transfer(event_id: str, amount_minor: int, kind: str = "procurement") -> TransferEvent:
    return TransferEvent(event_id=event_id, transfer_id=f"tr_{event_id}", event_type="transfer.created",
                         tenant_id="t1", amount_minor=amount_minor, currency="USD", currency_exponent=2,
                         source_account="acc_src", destination_account="acc_dst", metadata={"type": kind},
                         occurred_at=int(time.time() * 1000))


@pytest.fixture
async def world(kafka_bootstrap):
    async with EngineWorld(kafka_bootstrap) as w:
        yield w


async def approve(world: EngineWorld, instance_id: str, step: int, actor: Actor) -> None:
    await world.wait_for_event(instance_id, ev.ApprovalRequested, step=step)
    await world.send_command(RecordDecision(command_id=f"decide:{instance_id}:{step}:{actor.id}",
                                            instance_id=instance_id, step=step, decision="approve", actor=actor))
    await world.wait_for_event(instance_id, ev.StepApproved, step=step)


async def execute_payment(world: EngineWorld, instance_id: str) -> None:
    """The engine orders the payment itself (docs/adr/0023); the payment service's answer comes back."""
    order = await world.pay(instance_id, step=4, output={"status": "executed"})
    assert order.action == "execute_transfer" and order.idempotency_key == f"{instance_id}:4:v1"
    await world.wait_for_event(instance_id, ev.InstanceCompleted)


async def test_procurement_up_to_1000_skips_the_cfo_and_needs_the_manager(world):
    await world.publish_template("tpl_procurement", builtin_template("procurement_approval"))
    await world.start_engine()
    await world.send_transfer(transfer("evt_small", 50_000))  # 500.00 USD
    instance_id = world.event_instance_id("tpl_procurement", "evt_small")
    skipped = await world.wait_for_event(instance_id, ev.StepSkipped)
    assert skipped.step == 2
    await approve(world, instance_id, 3, MANAGER)
    await execute_payment(world, instance_id)


async def test_procurement_above_1000_needs_the_cfo_then_the_manager(world):
    await world.publish_template("tpl_procurement", builtin_template("procurement_approval"))
    await world.start_engine()
    await world.send_transfer(transfer("evt_large", 500_000))  # 5,000.00 USD
    instance_id = world.event_instance_id("tpl_procurement", "evt_large")
    await world.wait_for_event(instance_id, ev.ApprovalRequested, step=2)
    # the manager cannot stand in for the CFO
    await world.send_command(RecordDecision(command_id="wrong-role", instance_id=instance_id, step=2,
                                            decision="approve", actor=MANAGER))
    rejected = await world.wait_for_event(instance_id, ev.CommandRejected)
    assert "not among the approvers" in rejected.reason
    await approve(world, instance_id, 2, CFO)
    await approve(world, instance_id, 3, MANAGER)
    await execute_payment(world, instance_id)
    kinds = [type(e).__name__ for e in world.events[instance_id]]
    assert "StepSkipped" not in kinds


async def test_a_redelivered_transfer_event_starts_nothing_new(world):
    await world.publish_template("tpl_procurement", builtin_template("procurement_approval"))
    await world.start_engine()
    event = transfer("evt_twice", 20_000)
    await world.send_transfer(event)
    await world.send_transfer(event)
    instance_id = world.event_instance_id("tpl_procurement", "evt_twice")
    rejected = await world.wait_for_event(instance_id, ev.CommandRejected)
    assert "already" in rejected.reason
    started = [e for e in world.events[instance_id] if isinstance(e, ev.InstanceStarted)]
    assert len(started) == 1
    assert len(world.events) == 1  # no other instance anywhere


async def test_a_poison_record_lands_in_the_dlq_while_the_next_one_flows(world):
    await world.publish_template("tpl_procurement", builtin_template("procurement_approval"))
    await world.start_engine()
    await world.send_raw(topics.PAYMENTS_TRANSFERS, b"\x00garbage that is no event", key=b"bad")
    await world.send_raw(topics.WORKFLOW_COMMANDS, b'{"not": "a command"}', key=b"wfi_whatever")
    await world.send_transfer(transfer("evt_after_poison", 10_000))
    instance_id = world.event_instance_id("tpl_procurement", "evt_after_poison")
    await world.wait_for_event(instance_id, ev.ApprovalRequested, step=3)
    await world.wait_until(lambda: len(world.dlq) >= 2, message="two dead letters")
    by_topic = {letter.source_topic: letter for letter in world.dlq}
    transfer_letter = by_topic[world.topic(topics.PAYMENTS_TRANSFERS)]
    assert transfer_letter.value == b"\x00garbage that is no event"
    assert transfer_letter.reason
    command_letter = by_topic[world.topic(topics.WORKFLOW_COMMANDS)]
    assert command_letter.value == b'{"not": "a command"}'


WAIT_TEMPLATE = {
    "name": "Cooling-off period",
    "trigger_type": "manual",
    "steps": [
        {"type": "wait", "name": "Cool off", "config": {"duration_seconds": 3}},
        {"type": "condition", "name": "Done", "config": {"expression": "true", "if_true": "complete"}},
    ],
}


async def test_a_timer_fires_after_the_worker_was_restarted(world):
    await world.publish_template("tpl_wait", WAIT_TEMPLATE)
    engine = await world.start_engine()
    await world.send_command(StartInstance(command_id="start:wfi_wait1", instance_id="wfi_wait1",
                                           template_id="tpl_wait", template_version=1, tenant_id="t1",
                                           trigger={"id": "x"}))
    await world.wait_for_event("wfi_wait1", ev.WaitStarted)
    await world.stop_engine(engine)
    await asyncio.sleep(3.5)  # the timer falls due while no worker runs
    assert not any(isinstance(e, ev.InstanceCompleted) for e in world.events["wfi_wait1"])
    await world.start_engine()  # restores the state, and the timer with it, from the changelog
    await world.wait_for_event("wfi_wait1", ev.InstanceCompleted, timeout=30)
    succeeded = next(e for e in world.events["wfi_wait1"] if isinstance(e, ev.StepSucceeded))
    assert succeeded.output["waited_ms"] >= 3000


async def test_a_result_for_an_old_attempt_is_rejected_by_the_engine(world):
    await world.publish_template("tpl_procurement", builtin_template("procurement_approval"))
    await world.start_engine()
    await world.send_transfer(transfer("evt_stale", 10_000))
    instance_id = world.event_instance_id("tpl_procurement", "evt_stale")
    await approve(world, instance_id, 3, MANAGER)
    await world.wait_for_payment(instance_id)
    await world.send_command(ReportStepResult(command_id="stale", instance_id=instance_id, step=4, attempt=7,
                                              outcome="succeeded", output={}), topic=topics.WORKFLOW_STEP_RESULTS)
    rejected = await world.wait_for_event(instance_id, ev.CommandRejected, command_id="stale")
    assert "attempt 1" in rejected.reason and "awaiting payment" in rejected.reason
    await world.send_command(RecordPaymentResult(command_id="other-visit", instance_id=instance_id, step=4,
                                                 operation_key=f"{instance_id}:4:v9", status="succeeded"),
                             topic=topics.WORKFLOW_STEP_RESULTS)
    rejected = await world.wait_for_event(instance_id, ev.CommandRejected, command_id="other-visit")
    assert f"Expected the payment result of {instance_id}:4:v1" in rejected.reason


THRESHOLD_TEMPLATE = {
    "name": "Large transfer review",
    "trigger_type": "threshold",
    "trigger_config": {"field": "amount", "op": "gte", "value": 10000},
    "steps": [{"type": "approval", "name": "Treasury", "config": {"approvers": {"type": "role", "value": "treasury"}}}],
}


async def test_a_threshold_trigger_starts_only_at_or_above_its_threshold(world):
    await world.publish_template("tpl_threshold", THRESHOLD_TEMPLATE)
    await world.start_engine()
    await world.send_transfer(transfer("evt_below", 999_999, kind="payroll"))  # 9,999.99
    await world.send_transfer(transfer("evt_at", 1_000_000, kind="payroll"))  # 10,000.00
    at = world.event_instance_id("tpl_threshold", "evt_at")
    await world.wait_for_event(at, ev.ApprovalRequested)
    below = world.event_instance_id("tpl_threshold", "evt_below")
    await asyncio.sleep(1.0)
    assert below not in world.events


SCHEDULED_TEMPLATE = {
    "name": "Sweep every two seconds",
    "trigger_type": "scheduled",
    "trigger_config": {"cron": "* * * * * */2", "trigger_data": {"account": "acc_sweep"}},
    "steps": [{"type": "condition", "name": "Done", "config": {"expression": "trigger.account == 'acc_sweep'",
                                                               "if_true": "complete", "if_false": "fail"}}],
}


async def test_a_scheduled_trigger_starts_one_instance_per_cron_tick(world):
    await world.publish_template("tpl_scheduled", SCHEDULED_TEMPLATE)
    await world.start_engine()
    await world.wait_until(lambda: sum(any(isinstance(e, ev.InstanceCompleted) for e in events)
                                       for events in world.events.values()) >= 2,
                           timeout=30, message="two scheduled instances completed")
    started = [events[0] for events in world.events.values() if isinstance(events[0], ev.InstanceStarted)]
    ticks = [e.trigger["scheduled_at"] for e in started]
    assert len(ticks) == len(set(ticks))  # one instance per tick, never two
    assert all(e.source.startswith("schedule:") for e in started)


async def test_timers_survive_a_rebalance_to_a_second_worker(world):
    await world.publish_template("tpl_wait", WAIT_TEMPLATE)
    first = await world.start_engine()
    ids = [f"wfi_rebalance_{n:02d}" for n in range(24)]
    for instance_id in ids:
        await world.send_command(StartInstance(command_id=f"start:{instance_id}", instance_id=instance_id,
                                               template_id="tpl_wait", template_version=1, tenant_id="t1",
                                               trigger={"id": instance_id}))
    for instance_id in ids:
        await world.wait_for_event(instance_id, ev.WaitStarted)
    second = await world.start_engine()  # the group rebalances: some partitions (and their timers) move
    await world.wait_until(lambda: all(len(e.workers[0].producers) < world.partitions for e in (first, second)),
                           timeout=30, message="both workers own partitions")
    for instance_id in ids:
        await world.wait_for_event(instance_id, ev.InstanceCompleted, timeout=40)
    moved = set(second.processor.states) & {p for p in range(world.partitions)}
    assert moved, "the second worker took no partition"
    for instance_id in ids:
        kinds = [type(e).__name__ for e in world.events[instance_id]]
        assert kinds.count("InstanceCompleted") == 1, world.log_text(instance_id)


ESCALATING_TEMPLATE = {
    "name": "Escalating approval",
    "trigger_type": "manual",
    "steps": [{"type": "approval", "name": "Manager", "config": {
        "approvers": {"type": "role", "value": "finance_manager"},
        "timeout_hours": 0.0005,  # 1.8 s
        "on_timeout": {"action": "escalate", "approvers": {"type": "role", "value": "cfo"},
                       "timeout_hours": 0.0005, "then": "auto_reject"}}}],
}


async def test_an_approval_times_out_escalates_and_then_auto_rejects_on_durable_timers(world):
    await world.publish_template("tpl_escalating", ESCALATING_TEMPLATE)
    await world.start_engine()
    await world.send_command(StartInstance(command_id="start:wfi_esc", instance_id="wfi_esc",
                                           template_id="tpl_escalating", template_version=1, tenant_id="t1",
                                           trigger={"amount": 10}))
    escalated = await world.wait_for_event("wfi_esc", ev.ApprovalEscalated, timeout=20)
    assert escalated.approvers == {"type": "role", "value": "cfo"}
    await world.wait_until(lambda: len([r for r in world.requests["wfi_esc"] if r.kind == "approval"]) == 2,
                           message="an escalation notice for the approval handler")
    notices = [r for r in world.requests["wfi_esc"] if r.kind == "approval"]
    assert notices[1].config["escalation"] == 1
    rejected = await world.wait_for_event("wfi_esc", ev.StepRejected, timeout=20)
    assert rejected.automatic
    failed = await world.wait_for_event("wfi_esc", ev.InstanceFailed)
    assert "rejected" in failed.reason


async def test_a_finished_instance_is_forgotten_after_its_retention_and_stays_forgotten(world):
    from aiokafka import AIOKafkaConsumer

    done = {"name": "Done at once", "trigger_type": "manual",
            "steps": [{"type": "condition", "name": "Done", "config": {"expression": "true", "if_true": "complete"}}]}
    await world.publish_template("tpl_done", done)
    engine = await world.start_engine(retention_hours=0.0005, retention_sweep_ms=200)  # 1.8 s
    await world.send_command(StartInstance(command_id="start:wfi_old", instance_id="wfi_old", template_id="tpl_done",
                                           template_version=1, tenant_id="t1", trigger={}))
    await world.wait_for_event("wfi_old", ev.InstanceCompleted)
    await world.wait_until(lambda: not any("wfi_old" in s for s in engine.processor.states.values()),
                           timeout=20, message="the engine forgot the finished instance")
    # the changelog holds a tombstone, so a restarted worker does not bring it back
    consumer = AIOKafkaConsumer(world.topic(topics.ENGINE_INSTANCES_CHANGELOG), bootstrap_servers=world.bootstrap,
                                isolation_level="read_committed", auto_offset_reset="earliest")
    await consumer.start()
    try:
        values = []
        for records in (await consumer.getmany(timeout_ms=3000)).values():
            values += [r.value for r in records if r.key == b"wfi_old"]
    finally:
        await consumer.stop()
    assert values and values[-1] is None


async def test_a_json_domain_event_starts_the_onboarding_template(world):
    import json

    await world.publish_template("tpl_onboarding", builtin_template("account_onboarding"))
    await world.start_engine()
    event = {"event_id": "evt_open_1", "event_type": "account.opened", "tenant_id": "t1",
             "data": {"metadata": {"customer_id": "c_42", "email": "new@customer.test"}}}
    await world.send_raw(topics.PAYMENTS_TRANSFERS, json.dumps(event).encode(), key=b"evt_open_1")
    instance_id = world.event_instance_id("tpl_onboarding", "evt_open_1")
    request = await world.wait_for_request(instance_id, step=1)
    assert request.kind == "external"
    assert request.config["url"] == "{{payos.crm_url}}/customers/c_42"  # payos.* is the handler's to fill


async def test_the_engine_reports_readiness_and_what_it_owns_over_http(world):
    import socket

    import aiohttp

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    await world.publish_template("tpl_wait", WAIT_TEMPLATE)
    await world.start_engine(metrics_port=port)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}/health") as response:
            report = await response.json()
            assert response.status == 200
        async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
            metrics_text = await response.text()
    assert report["status"] == "ready" and report["templates"] == 1
    # the trigger topic is co-partitioned: the processor starts its events inline, the matcher reads nothing
    assert report["partitions"] == {"processor": [0, 1, 2]}
    assert report["trigger_topics"] == {"inline": [world.topic(topics.PAYMENTS_TRANSFERS)], "matcher": []}
    assert "flowline_engine_owned_partitions" in metrics_text
