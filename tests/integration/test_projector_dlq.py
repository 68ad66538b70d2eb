"""The projector never skips a record silently (issue 9.1): what is no event, or an event the read model
cannot take, goes to `workflow.dlq` with the reason, and the events behind it are applied."""

from __future__ import annotations

import asyncio
import contextlib
import time

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from core.events import CommandRejected
from deploy import topics
from store.projector import Projector
from tests.integration.engine_harness import EngineWorld
from tests.unit.handlers.fakes import step_request

pytestmark = pytest.mark.asyncio(loop_scope="session")


def rejection(instance_id: str, reason: str) -> CommandRejected:
    return CommandRejected(instance_id=instance_id, seq=0, at=int(time.time() * 1000),
                           command_id=f"cmd-{instance_id}", command_type="RecordDecision", reason=reason)


async def read_dlq(world: EngineWorld, count: int, timeout: float = 30) -> list:
    consumer = AIOKafkaConsumer(world.topic(topics.WORKFLOW_DLQ), bootstrap_servers=world.bootstrap,
                                auto_offset_reset="earliest")
    await consumer.start()
    found: list = []
    try:
        async with asyncio.timeout(timeout):
            while len(found) < count:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    found.extend(world.codec.decode(r.value) for r in records)
    finally:
        await consumer.stop()
    return found


async def test_bad_records_on_workflow_events_are_dead_lettered_and_the_partition_flows(kafka_bootstrap,
                                                                                       database_url):
    async with EngineWorld(kafka_bootstrap, partitions=1) as world:
        group = f"projector-{world.prefix.rstrip('.')}"
        projector = Projector(bootstrap_servers=kafka_bootstrap, database_url=database_url,
                              topic_prefix=world.prefix, group_id=group)
        task = asyncio.create_task(projector.run())
        run = world.prefix.rstrip(".")
        events = topics.WORKFLOW_EVENTS
        await world.send_raw(events, b"\x00\x01 truncated", key=b"wfi_garbage")
        await world.send_raw(events, world.codec.encode(step_request("approval", {})), key=b"wfi_request")
        # PostgreSQL text cannot hold NUL: this event decodes but the read model cannot take it
        await world.send_raw(events, world.codec.encode(rejection(f"wfi_nul_{run}", "bad\x00reason")), key=b"n")
        await world.send_raw(events, world.codec.encode(rejection(f"wfi_ok_{run}", "fine")), key=b"ok")
        try:
            letters = await read_dlq(world, 3)
            conn = await asyncpg.connect(database_url)
            try:
                for _ in range(100):
                    row = await conn.fetchrow("SELECT reason FROM workflow_rejected_commands WHERE instance_id = $1",
                                              f"wfi_ok_{run}")
                    if row:
                        break
                    await asyncio.sleep(0.1)
            finally:
                await conn.close()
            assert row is not None and row["reason"] == "fine"
            by_key = {letter.key: letter for letter in letters}
            assert by_key[b"wfi_garbage"].error_type == "undecodable"
            assert by_key[b"wfi_request"].reason == "StepRequest is not a workflow event"
            assert by_key[b"n"].error_type == "unappliable" and "could not apply" in by_key[b"n"].reason
            assert all(letter.consumer == group for letter in letters)
            consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=group, enable_auto_commit=False)
            await consumer.start()
            try:
                for _ in range(50):
                    if await consumer.committed(TopicPartition(world.topic(events), 0)) == 4:
                        break
                    await asyncio.sleep(0.1)
                assert await consumer.committed(TopicPartition(world.topic(events), 0)) == 4
            finally:
                await consumer.stop()
        finally:
            projector.stop()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(task, 15)
