"""Inline starts on the real broker (docs/adr/0014): the processor starts an event's instances in the
transaction that consumes it; a redelivered or replayed event never starts a second instance; the upgrade
(and the way back) neither starts an old event again nor loses one; a trigger topic of another partition
count, and the setting turned off, keep the path through the matcher and `workflow.commands`."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from core import events as ev
from core.commands import StartInstance
from schemas import topics
from streams.app import Engine
from streams.transactional import partition_for
from tests.integration.engine_harness import EngineWorld

pytestmark = pytest.mark.asyncio(loop_scope="session")

DONE = {  # every transfer of tenant t1 starts it; it completes at once
    "name": "Every transfer",
    "trigger_type": "on_transfer",
    "trigger_config": {},
    "steps": [{"type": "condition", "name": "Done", "config": {"expression": "true", "if_true": "complete"}}],
}
PAY = {  # a first step request right away: the action step
    "name": "Pay",
    "trigger_type": "on_transfer",
    "trigger_config": {},
    "steps": [{"type": "action", "name": "Execute",
               "config": {"action": "execute_transfer", "params": {"transfer_id": "{{trigger.id}}"}}}],
}


def event(event_id: str, amount_minor: int = 100) -> bytes:
    return json.dumps({"event_id": event_id, "tenant_id": "t1", "amount_minor": amount_minor,
                       "currency": "USD"}).encode()


def ids_on_every_partition(world: EngineWorld, prefix: str, each: int = 2) -> list[str]:
    """Event ids (their own keys) covering every partition of the world `each` times: a test that waits
    for them has seen every partition's lane get past whatever came before them."""
    found: dict[int, list[str]] = {p: [] for p in range(world.partitions)}
    n = 0
    while any(len(ids) < each for ids in found.values()):
        event_id = f"{prefix}_{n}"
        ids = found[partition_for(event_id.encode(), world.partitions)]
        if len(ids) < each:
            ids.append(event_id)
        n += 1
    return [event_id for ids in found.values() for event_id in ids]


def key_on(world: EngineWorld, partition: int, prefix: str) -> str:
    n = 0
    while partition_for(f"{prefix}_{n}".encode(), world.partitions) != partition:
        n += 1
    return f"{prefix}_{n}"


async def send(world: EngineWorld, event_ids: list[str], topic: str = topics.PAYMENTS_TRANSFERS) -> None:
    for event_id in event_ids:
        await world.send_raw(topic, event(event_id), key=event_id.encode())


async def read_topic(world: EngineWorld, name: str) -> list:
    """Every committed record of a (prefixed) topic as it is now, decoded."""
    consumer = AIOKafkaConsumer(bootstrap_servers=world.bootstrap, isolation_level="read_committed",
                                enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(world.topic(name), p) for p in range(world.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        found = []
        todo = {tp for tp in tps if ends[tp] > 0}
        while todo:
            for tp, records in (await consumer.getmany(*todo, timeout_ms=500)).items():
                found.extend(world.codec.decode(r.value) for r in records)
                if await consumer.position(tp) >= ends[tp]:
                    todo.discard(tp)
        return found
    finally:
        await consumer.stop()


def starts(world: EngineWorld, instance_id: str) -> int:
    return sum(isinstance(e, ev.InstanceStarted) for e in world.events.get(instance_id, ()))


def rejected_starts(world: EngineWorld) -> list[ev.CommandRejected]:
    return [e for events in world.events.values() for e in events
            if isinstance(e, ev.CommandRejected) and e.command_type == "StartInstance"]


async def test_a_transfer_starts_its_instance_and_first_step_in_the_transaction_that_consumes_it(kafka_bootstrap):
    async with EngineWorld(kafka_bootstrap, partitions=3) as world:
        await world.publish_template("tpl_pay", PAY, tenant_id="t1")
        engine = await world.start_engine()
        assert [w.role for w in engine.workers] == ["processor"]  # no matcher consumer: nothing left for it
        event_ids = ids_on_every_partition(world, "evt_inline", each=3)
        await send(world, event_ids)
        for event_id in event_ids:
            instance_id = world.event_instance_id("tpl_pay", event_id)
            assert partition_for(instance_id.encode(), world.partitions) == partition_for(event_id.encode(),
                                                                                        world.partitions)
            started = await world.wait_for_event(instance_id, ev.InstanceStarted)
            assert started.source == f"event:{topics.PAYMENTS_TRANSFERS}:{event_id}"
            order = await world.wait_for_payment(instance_id)  # the engine's own order, same transaction (ADR 23)
            assert order.action == "execute_transfer" and order.idempotency_key == f"{instance_id}:1:v1"
        # no start travelled through workflow.commands: the user sees the same instances, one hop sooner
        assert not [c for c in await read_topic(world, topics.WORKFLOW_COMMANDS) if isinstance(c, StartInstance)]
        assert not world.dlq


async def test_an_event_redelivered_on_its_partition_starts_one_instance(kafka_bootstrap):
    async with EngineWorld(kafka_bootstrap, partitions=3) as world:
        await world.publish_template("tpl_done", DONE, tenant_id="t1")
        await world.start_engine()
        for event_id in ("evt_twice_a", "evt_twice_b"):  # the same bytes at two offsets of one partition
            await send(world, [event_id, event_id])
        for event_id in ("evt_twice_a", "evt_twice_b"):
            instance_id = world.event_instance_id("tpl_done", event_id)
            await world.wait_for_event(instance_id, ev.CommandRejected)
            assert starts(world, instance_id) == 1
            rejection = next(e for e in world.events[instance_id] if isinstance(e, ev.CommandRejected))
            assert rejection.command_id == f"start:{instance_id}" and "already applied" in rejection.reason


async def test_events_replayed_by_their_producer_start_no_instance_twice(kafka_bootstrap):
    async with EngineWorld(kafka_bootstrap, partitions=3) as world:
        await world.publish_template("tpl_done", DONE, tenant_id="t1")
        await world.start_engine()
        first = ids_on_every_partition(world, "evt_replay")
        await send(world, first)
        for event_id in first:
            await world.wait_for_event(world.event_instance_id("tpl_done", event_id), ev.InstanceCompleted)
        # the same records again (a producer replaying from an old offset): each is matched once more
        await send(world, first)
        second = ids_on_every_partition(world, "evt_after_replay")
        await send(world, second)
        for event_id in second:
            await world.wait_for_event(world.event_instance_id("tpl_done", event_id), ev.InstanceCompleted)
        # every replayed event was decided before the later ones of its partition: each was refused once
        assert len(rejected_starts(world)) == len(first)
        for event_id in first + second:
            assert starts(world, world.event_instance_id("tpl_done", event_id)) == 1
        assert sum(starts(world, i) for i in world.events) == len(first) + len(second)


async def spawn_ready(world: EngineWorld, log_name: str):
    """An engine in its own process (so that it can be killed), once its /health says it owns its
    partitions: a fresh processor group starts the trigger topic at its end, so events sent before that
    would not be its to start."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = world.spawn_engine(log_name, {"FLOWLINE_ENGINE_HTTP_PORT": str(port)})
    async with aiohttp.ClientSession() as http:
        for _ in range(600):
            assert proc.poll() is None, f"the engine exited; see .flowline/{log_name}.log"
            try:
                async with http.get(f"http://127.0.0.1:{port}/health") as response:
                    if response.status == 200:
                        return proc
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("the spawned engine was not ready within 60 s")


async def test_an_engine_killed_mid_batch_starts_every_event_once(kafka_bootstrap):
    count = int(os.environ.get("FLOWLINE_INLINE_KILL_EVENTS", "300"))
    async with EngineWorld(kafka_bootstrap, partitions=3) as world:
        await world.publish_template("tpl_done", DONE, tenant_id="t1")
        proc = await spawn_ready(world, "inline-start-kill-1")
        event_ids = [f"evt_kill_{n}" for n in range(count)]
        sender = asyncio.create_task(send(world, event_ids))
        await world.wait_until(lambda: sum(starts(world, world.event_instance_id("tpl_done", e)) > 0
                                           for e in event_ids) >= count // 10, timeout=60,
                               message="a tenth of the events started")
        os.kill(proc.pid, signal.SIGKILL)  # mid-load: a transaction is open or about to be
        proc.wait()
        await sender
        await spawn_ready(world, "inline-start-kill-2")
        await world.wait_until(lambda: all(starts(world, world.event_instance_id("tpl_done", e)) for e in event_ids),
                               timeout=120, message="every event started")
        await asyncio.sleep(1.0)  # a second start would show up by now
        for event_id in event_ids:
            assert starts(world, world.event_instance_id("tpl_done", event_id)) == 1, event_id
        started = {i for i in world.events if starts(world, i)}
        assert len(started) == count  # no instance under any other id


async def test_the_upgrade_starts_where_the_matcher_stopped(kafka_bootstrap):
    """Before: the matcher's group read the trigger topic. After: the processor's group takes it from the
    matcher's committed offsets: the events the matcher started are not started again (under their new,
    partition-bound ids), the events sent while no engine ran are started once."""
    async with EngineWorld(kafka_bootstrap, partitions=3) as world:
        await world.publish_template("tpl_done", DONE, tenant_id="t1")
        old_engine = await world.start_engine(inline_start=False)
        assert sorted(w.role for w in old_engine.workers) == ["matcher", "processor"]
        old = ids_on_every_partition(world, "evt_old")
        await send(world, old)
        for event_id in old:
            await world.wait_for_event(world.event_instance_id("tpl_done", event_id, inline=False),
                                       ev.InstanceCompleted)
        assert len([c for c in await read_topic(world, topics.WORKFLOW_COMMANDS)
                    if isinstance(c, StartInstance)]) == len(old)  # the old path: through workflow.commands
        await world.stop_engine(old_engine)
        while_down = ids_on_every_partition(world, "evt_down")
        await send(world, while_down)
        await world.start_engine()  # inline starts on (the default)
        new = ids_on_every_partition(world, "evt_new")
        await send(world, new)
        for event_id in while_down + new:
            await world.wait_for_event(world.event_instance_id("tpl_done", event_id), ev.InstanceCompleted)
        await asyncio.sleep(0.5)
        for event_id in old:
            before, after = (world.event_instance_id("tpl_done", event_id, inline=inline) for inline in (False, True))
            assert starts(world, before) == 1
            assert before == after or starts(world, after) == 0  # never again under its partition-bound id
        for event_id in while_down + new:
            assert starts(world, world.event_instance_id("tpl_done", event_id)) == 1
        assert not rejected_starts(world)  # nothing was even matched twice
        assert sum(starts(world, i) for i in world.events) == len(old) + len(while_down) + len(new)


async def test_turning_inline_starts_off_starts_where_the_processor_stopped(kafka_bootstrap):
    async with EngineWorld(kafka_bootstrap, partitions=3) as world:
        await world.publish_template("tpl_done", DONE, tenant_id="t1")
        engine = await world.start_engine()
        before = ids_on_every_partition(world, "evt_inline")
        await send(world, before)
        for event_id in before:
            await world.wait_for_event(world.event_instance_id("tpl_done", event_id), ev.InstanceCompleted)
        await world.stop_engine(engine)
        while_down = ids_on_every_partition(world, "evt_down")
        await send(world, while_down)
        await world.start_engine(inline_start=False)
        after = ids_on_every_partition(world, "evt_matcher")
        await send(world, after)
        for event_id in while_down + after:
            await world.wait_for_event(world.event_instance_id("tpl_done", event_id, inline=False),
                                       ev.InstanceCompleted)
        await asyncio.sleep(0.5)
        assert not rejected_starts(world)
        assert sum(starts(world, i) for i in world.events) == len(before) + len(while_down) + len(after)


async def test_a_fresh_processor_group_starts_at_the_end_and_keeps_that_position(kafka_bootstrap):
    """Neither group has an offset: the processor starts at the end (never the earliest, which would start
    every old event under a new id), and commits that position at once, so that an event sent while the
    engine is down, to a partition that had no event yet, is not skipped by a second fall-back."""
    async with EngineWorld(kafka_bootstrap, partitions=3) as world:
        await world.publish_template("tpl_done", DONE, tenant_id="t1")
        early = key_on(world, 0, "evt_early")
        await send(world, [early])
        engine = await world.start_engine()
        on_zero = key_on(world, 0, "evt_zero")
        await send(world, [on_zero])
        await world.wait_for_event(world.event_instance_id("tpl_done", on_zero), ev.InstanceCompleted)
        assert starts(world, world.event_instance_id("tpl_done", early)) == 0
        await world.stop_engine(engine)
        quiet = [key_on(world, p, "evt_quiet") for p in (1, 2)]  # partitions that never had an event
        await send(world, quiet)
        await world.start_engine()
        for event_id in quiet:
            await world.wait_for_event(world.event_instance_id("tpl_done", event_id), ev.InstanceCompleted)
        assert starts(world, world.event_instance_id("tpl_done", early)) == 0


async def test_a_group_without_committed_offsets_resumes_at_the_changelogs(kafka_bootstrap):
    """The processor's consumed offsets live in its changelog (ADR 13) and its group's lag them by up to a
    second, so a worker killed before its first group commit leaves a changelog that knows where the trigger
    partitions stand and a group that does not. The upgrade rule (ADR 14) must not take that for "never read"
    and start at the end: the events sent while the engine was down would never start. An engine of another
    id reads the same changelog with a group that has no offset at all: the same situation, made certain."""
    async with EngineWorld(kafka_bootstrap, partitions=3) as world:
        await world.publish_template("tpl_done", DONE, tenant_id="t1")
        engine = await world.start_engine()
        before = ids_on_every_partition(world, "evt_before")
        await send(world, before)
        for event_id in before:
            await world.wait_for_event(world.event_instance_id("tpl_done", event_id), ev.InstanceCompleted)
        await world.stop_engine(engine)
        while_down = ids_on_every_partition(world, "evt_while_down")
        await send(world, while_down)
        await world.start_engine(app_id=f"{world.app_id}-regrouped")
        for event_id in while_down:
            await world.wait_for_event(world.event_instance_id("tpl_done", event_id), ev.InstanceCompleted)
        await send(world, ids_on_every_partition(world, "evt_after"))  # every lane got past anything replayed
        for event_id in ids_on_every_partition(world, "evt_after"):
            await world.wait_for_event(world.event_instance_id("tpl_done", event_id), ev.InstanceCompleted)
        assert all(starts(world, world.event_instance_id("tpl_done", e)) == 1 for e in before + while_down)
        assert not rejected_starts(world)


async def test_a_trigger_topic_with_another_partition_count_goes_through_the_matcher(kafka_bootstrap):
    async with EngineWorld(kafka_bootstrap, partitions=3) as world:
        admin = AIOKafkaAdminClient(bootstrap_servers=world.bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(world.topic("partner.events"), 2, 1)])
        finally:
            await admin.close()
        await world.publish_template("tpl_done", DONE, tenant_id="t1")
        await world.publish_template("tpl_partner", {**DONE, "name": "Partner",
                                                     "trigger_config": {"topic": "partner.events"}}, tenant_id="t1")
        engine = await world.start_engine(trigger_topics=(topics.PAYMENTS_TRANSFERS, "partner.events"))
        assert engine.trigger_topics == ([world.topic(topics.PAYMENTS_TRANSFERS)], [world.topic("partner.events")])
        assert sorted(w.role for w in engine.workers) == ["matcher", "processor"]
        await world.send_raw("partner.events", event("evt_partner"), key=b"evt_partner")
        await send(world, ["evt_transfer"])
        partner = world.event_instance_id("tpl_partner", "evt_partner", "partner.events", inline=False)
        await world.wait_for_event(partner, ev.InstanceCompleted)
        await world.wait_for_event(world.event_instance_id("tpl_done", "evt_transfer"), ev.InstanceCompleted)
        through_commands = [c.instance_id for c in await read_topic(world, topics.WORKFLOW_COMMANDS)
                            if isinstance(c, StartInstance)]
        assert through_commands == [partner]


async def test_the_matcher_and_processor_roles_apart_split_the_trigger_topics_alike(kafka_bootstrap):
    """`--role matcher` and `--role processor` in separate processes: the processor starts the co-partitioned
    topic's events inline, the matcher the other topic's; a matcher with nothing to read is ready and idle."""
    async with EngineWorld(kafka_bootstrap, partitions=3) as world:
        admin = AIOKafkaAdminClient(bootstrap_servers=world.bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(world.topic("partner.events"), 2, 1)])
        finally:
            await admin.close()
        await world.publish_template("tpl_done", DONE, tenant_id="t1")
        await world.publish_template("tpl_partner", {**DONE, "name": "Partner",
                                                     "trigger_config": {"topic": "partner.events"}}, tenant_id="t1")
        both = (topics.PAYMENTS_TRANSFERS, "partner.events")
        idle = Engine(world.settings(), roles=("matcher",))  # only payments.transfers: nothing for it
        engines = [Engine(world.settings(trigger_topics=both), roles=(role,)) for role in ("matcher", "processor")]
        for engine in (idle, *engines):
            world._engines.append(engine)
            task = asyncio.create_task(engine.run())
            world._tasks.append(task)
            await world._wait_owned(engine, task)
        assert idle.workers == [] and idle.ready
        assert [[w.role for w in engine.workers] for engine in engines] == [["matcher"], ["processor"]]
        await world.send_raw("partner.events", event("evt_partner"), key=b"evt_partner")
        await send(world, ["evt_transfer"])
        await world.wait_for_event(world.event_instance_id("tpl_partner", "evt_partner", "partner.events",
                                                           inline=False), ev.InstanceCompleted)
        await world.wait_for_event(world.event_instance_id("tpl_done", "evt_transfer"), ev.InstanceCompleted)


async def test_starts_in_an_aborted_transaction_are_decided_again_once(kafka_bootstrap):
    """A batch of transfers whose transaction aborts (the changelog refuses one instance's state): the lane
    retries its records one at a time, so every other transfer starts exactly once, and the one that cannot
    be committed is dead-lettered alone; nothing of the aborted transaction is visible."""
    async with EngineWorld(kafka_bootstrap, partitions=1) as world:
        await world.publish_template("tpl_done", DONE, tenant_id="t1")
        admin = AIOKafkaAdminClient(bootstrap_servers=world.bootstrap)
        await admin.start()
        try:
            await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, world.topic(
                topics.ENGINE_INSTANCES_CHANGELOG), configs={"max.message.bytes": "100000"})])
        finally:
            await admin.close()
        await world.start_engine()
        big = json.dumps({"event_id": "evt_big", "tenant_id": "t1", "amount_minor": 100, "currency": "USD",
                          "metadata": {f"k{n}": "m" * 4000 for n in range(40)}}).encode()
        small = [f"evt_small_{n}" for n in range(20)]
        topic = world.topic(topics.PAYMENTS_TRANSFERS)
        await world.producer.send(topic, event(small[0]), key=small[0].encode())
        await world.producer.send(topic, big, key=b"evt_big")  # one batch with the others, most likely
        for event_id in small[1:]:
            await world.producer.send(topic, event(event_id), key=event_id.encode())
        await world.producer.flush()
        for event_id in small:
            await world.wait_for_event(world.event_instance_id("tpl_done", event_id), ev.InstanceCompleted,
                                       timeout=60)
        await world.wait_until(lambda: any(d.key == b"evt_big" for d in world.dlq), timeout=60,
                               message="the big transfer's dead letter")
        letter = next(d for d in world.dlq if d.key == b"evt_big")
        assert letter.error_type == "uncommittable" and "TooLarge" in letter.reason
        assert starts(world, world.event_instance_id("tpl_done", "evt_big")) == 0
        for event_id in small:
            assert starts(world, world.event_instance_id("tpl_done", event_id)) == 1
        assert not rejected_starts(world)
