"""Races (issue 9, "Suites that keep them found"), each tried many times on the real broker and engine.

- two (and three) approvers deciding at the same moment on a DUAL step: the quorum is counted once,
  exactly one StepApproved naming two distinct approvers, exactly one completion;
- a decision racing its step's timeout: exactly one outcome per instance (approved or timed out, never
  both), and exactly one terminal event;
- cancel racing a handler's result: exactly one terminal event; a cancelled instance never reports its
  step (a payment) as succeeded after the cancellation, nor completes;
- template update and deactivate racing events in flight: an event produced right after an update is
  matched against the new version only; instances in flight keep their version across an update and a
  deactivation and finish.
Each ends with the invariant checker over `workflow.events` read as a downstream consumer does.
`FLOWLINE_CHAOS_LONG=1` tries each race many more times (docs/testing.md).
"""

from __future__ import annotations

import asyncio
import json
import random

import pytest

from core import events as ev
from core.actors import Actor
from core.commands import CancelInstance, RecordDecision, RecordPaymentResult, StartInstance
from schemas import topics
from tests.integration import invariants
from tests.integration.chaos import scaled
from tests.integration.engine_harness import EngineWorld

pytestmark = pytest.mark.asyncio(loop_scope="session")

APPROVERS = [Actor(id=f"u_{n}", roles=("approver",), tenant_id="t1") for n in (1, 2, 3)]
FINISH = {"type": "condition", "name": "Finish", "config": {"expression": "true", "if_true": "complete"}}


def of(world: EngineWorld, instance_id: str, kind: type) -> list:
    return [e for e in world.events.get(instance_id, ()) if isinstance(e, kind)]


def terminal(world: EngineWorld, instance_id: str) -> bool:
    return any(isinstance(e, invariants.TERMINAL) for e in world.events.get(instance_id, ()))


async def start(world: EngineWorld, template_id: str, instance_id: str, trigger: dict | None = None) -> None:
    await world.send_command(StartInstance(command_id=f"start:{instance_id}", instance_id=instance_id,
                                           template_id=template_id, template_version=1, tenant_id="t1",
                                           trigger=trigger or {"n": 1}))


async def decide(world: EngineWorld, instance_id: str, actor: Actor, decision: str = "approve") -> None:
    await world.send_command(RecordDecision(command_id=f"decide:{instance_id}:1:{actor.id}", instance_id=instance_id,
                                            step=1, decision=decision, actor=actor))


@pytest.fixture(scope="module")
async def world(kafka_bootstrap):
    async with EngineWorld(kafka_bootstrap, partitions=3) as world:
        await world.start_engine()
        yield world


async def test_approvers_deciding_at_the_same_moment_on_a_dual_step_count_once(world):
    await world.publish_template("tpl_dual_race", {"name": "Dual race", "trigger_type": "manual", "steps": [
        {"type": "approval", "name": "Two of three", "config": {
            "approvers": {"type": "user", "value": [a.id for a in APPROVERS]}, "level": "DUAL"}},
        FINISH]})
    races = scaled(40, 400)
    ids = [f"wfi_dual_{n:04d}" for n in range(races)]
    for instance_id in ids:
        await start(world, "tpl_dual_race", instance_id)
    for instance_id in ids:
        await world.wait_for_event(instance_id, ev.ApprovalRequested, step=1)
    # all decisions of all instances at once: two approvers on even instances, three on odd ones
    await asyncio.gather(*(decide(world, i, a) for n, i in enumerate(ids) for a in APPROVERS[:2 + n % 2]))
    await world.wait_until(lambda: all(terminal(world, i) for i in ids), timeout=120,
                           message="every dual approval finished")
    await asyncio.sleep(1)  # a second approval or completion would arrive now
    wrong = {}
    for instance_id in ids:
        approved = of(world, instance_id, ev.StepApproved)
        if len(approved) != 1 or len(set(approved[0].approved_by)) != 2 \
                or len(of(world, instance_id, ev.InstanceCompleted)) != 1:
            wrong[instance_id] = world.log_text(instance_id)
    assert wrong == {}
    assert invariants.check(await invariants.read_events(world.bootstrap, world.prefix), finished=ids) == []


async def test_a_decision_racing_its_timeout_has_exactly_one_outcome(world):
    timeout_s = 1.0
    await world.publish_template("tpl_timeout_race", {"name": "Timeout race", "trigger_type": "manual", "steps": [
        {"type": "approval", "name": "Quick", "config": {
            "approvers": {"type": "user", "value": [APPROVERS[0].id]}, "level": "SINGLE",
            "timeout_hours": timeout_s / 3600}},
        FINISH]})
    races = scaled(40, 400)
    ids = [f"wfi_tmo_{n:04d}" for n in range(races)]
    rng = random.Random(9)

    async def race(instance_id: str) -> None:
        await start(world, "tpl_timeout_race", instance_id)
        requested = await world.wait_for_event(instance_id, ev.ApprovalRequested, step=1)
        del requested
        # send the decision around the deadline: some before, some after, most within the sweep's window
        await asyncio.sleep(timeout_s + rng.uniform(-0.3, 0.3))
        await decide(world, instance_id, APPROVERS[0])

    await asyncio.gather(*(race(i) for i in ids))
    await world.wait_until(lambda: all(terminal(world, i) for i in ids), timeout=120,
                           message="every timeout race finished")
    await asyncio.sleep(1)
    outcomes = {i: (len(of(world, i, ev.StepApproved)), len(of(world, i, ev.StepTimedOut))) for i in ids}
    wrong = {i: world.log_text(i) for i, (a, t) in outcomes.items() if a + t != 1}
    assert wrong == {}
    approved = sum(a for a, _ in outcomes.values())
    print(f"{races} decision/timeout races: {approved} approved, {races - approved} timed out")
    assert invariants.check(await invariants.read_events(world.bootstrap, world.prefix), finished=ids) == []


async def test_cancel_racing_a_handler_result_ends_once(world):
    await world.publish_template("tpl_cancel_race", {"name": "Cancel race", "trigger_type": "manual", "steps": [
        {"type": "action", "name": "Execute Payment", "config": {
            "action": "execute_transfer", "params": {"transfer_id": "{{trigger.id}}"}}},
        FINISH]})
    races = scaled(40, 400)
    ids = [f"wfi_cancel_{n:04d}" for n in range(races)]
    admin = Actor(id="u_admin", roles=("workflow_admin",), tenant_id="t1")
    for instance_id in ids:
        await start(world, "tpl_cancel_race", instance_id, {"id": f"tr_{instance_id}"})
    orders = [await world.wait_for_payment(i) for i in ids]  # the engine orders each payment (docs/adr/0023)

    async def race(n: int, instance_id: str) -> None:
        cancel = world.send_command(CancelInstance(command_id=f"cancel:{instance_id}", instance_id=instance_id,
                                                   actor=admin, reason="race"))
        key = orders[n].idempotency_key  # the payment service's answer, as the relay reports it
        result = world.send_command(RecordPaymentResult(
            command_id=f"payment:{key}", instance_id=instance_id, step=1, operation_key=key, status="succeeded",
            output={"payment_id": f"pay_{n}"}), topic=topics.WORKFLOW_STEP_RESULTS)
        # the two arrive on different topics: stagger them by 0-60 ms so that both orders happen
        lag = (n % 4) * 0.02

        async def later(coro) -> None:
            await asyncio.sleep(lag)
            await coro

        await asyncio.gather(*((cancel, later(result)) if n % 2 else (result, later(cancel))))

    await asyncio.gather(*(race(n, i) for n, i in enumerate(ids)))
    await world.wait_until(lambda: all(terminal(world, i) for i in ids), timeout=120,
                           message="every cancel race finished")
    await asyncio.sleep(1)
    wrong = {}
    for instance_id in ids:
        kinds = [type(e).__name__ for e in world.events[instance_id]]
        cancelled, completed = kinds.count("InstanceCancelled"), kinds.count("InstanceCompleted")
        if cancelled + completed != 1 or (cancelled and "StepSucceeded" in kinds[kinds.index("InstanceCancelled"):]):
            wrong[instance_id] = world.log_text(instance_id)
    assert wrong == {}
    done = sum(1 for i in ids if of(world, i, ev.InstanceCompleted))
    print(f"{races} cancel/result races: {done} completed, {races - done} cancelled")
    assert invariants.check(await invariants.read_events(world.bootstrap, world.prefix), finished=ids) == []


def _event(event_id: str, race: str) -> bytes:
    return json.dumps({"event_id": event_id, "tenant_id": "t1", "amount_minor": 100, "currency": "USD",
                       "metadata": {"race": race}}).encode()


def _on_race(name: str, value: str, steps: list[dict]) -> dict:
    return {"name": name, "trigger_type": "on_transfer",
            "trigger_config": {"conditions": [{"field": "metadata.race", "op": "eq", "value": value}]},
            "steps": steps}


async def test_an_event_right_after_an_update_is_matched_against_the_new_version_only(world):
    races = scaled(30, 300)
    wrong: list[str] = []
    for n in range(races):
        template_id = f"tpl_upd_{n}"
        await world.publish_template(template_id, _on_race(f"Upd {n}", f"old{n}", [FINISH]))
        await world.publish_template(template_id, _on_race(f"Upd {n}", f"new{n}", [FINISH]), version=2)
        # right after the update's acknowledgement: one event only v1 matched, one only v2 matches
        await world.send_raw(topics.PAYMENTS_TRANSFERS, _event(f"evt_upd_old_{n}", f"old{n}"), key=b"race")
        await world.send_raw(topics.PAYMENTS_TRANSFERS, _event(f"evt_upd_new_{n}", f"new{n}"), key=b"race")
    last = world.event_instance_id("tpl_upd_last", "evt_upd_last", key="race")
    await world.publish_template("tpl_upd_last", _on_race("Last", "last", [FINISH]))
    await world.send_raw(topics.PAYMENTS_TRANSFERS, _event("evt_upd_last", "last"), key=b"race")
    await world.wait_for_event(last, ev.InstanceCompleted, timeout=120)  # same partition: all before decided
    for n in range(races):
        new = world.event_instance_id(f"tpl_upd_{n}", f"evt_upd_new_{n}", key="race")
        old = world.event_instance_id(f"tpl_upd_{n}", f"evt_upd_old_{n}", key="race")
        started = of(world, new, ev.InstanceStarted)
        if [s.template_version for s in started] != [2]:
            wrong.append(f"race {n}: the event for v2 started {started}")
        if old in world.events:
            wrong.append(f"race {n}: the event only v1 matched started an instance after the update")
    assert wrong == []
    assert not world.dlq


async def test_instances_in_flight_keep_their_version_across_update_and_deactivation(world):
    approval = {"type": "approval", "name": "Approve", "config": {
        "approvers": {"type": "user", "value": [APPROVERS[0].id]}, "level": "SINGLE"}}
    await world.publish_template("tpl_flight", {"name": "Flight", "trigger_type": "manual",
                                                "steps": [approval, FINISH]})
    count = scaled(20, 200)
    ids = [f"wfi_flight_{n:04d}" for n in range(count)]
    for instance_id in ids:
        await start(world, "tpl_flight", instance_id)
    for instance_id in ids:
        await world.wait_for_event(instance_id, ev.ApprovalRequested, step=1)
    # a v2 that would fail at once, then a deactivation, racing the decisions for v1's instances
    failing = {"type": "condition", "name": "Never", "config": {"expression": "false", "if_false": "fail"}}
    half = count // 2
    await asyncio.gather(
        world.publish_template("tpl_flight", {"name": "Flight", "trigger_type": "manual",
                                              "steps": [failing, FINISH]}, version=2),
        *(decide(world, i, APPROVERS[0]) for i in ids[:half]))
    await asyncio.gather(
        world.publish_template("tpl_flight", {"name": "Flight", "trigger_type": "manual",
                                              "steps": [failing, FINISH]}, version=3, status="PAUSED"),
        *(decide(world, i, APPROVERS[0]) for i in ids[half:]))
    await world.wait_until(lambda: all(terminal(world, i) for i in ids), timeout=120,
                           message="every instance in flight finished")
    wrong = {i: world.log_text(i) for i in ids if len(of(world, i, ev.InstanceCompleted)) != 1}
    assert wrong == {}
    assert invariants.check(await invariants.read_events(world.bootstrap, world.prefix), finished=ids) == []
