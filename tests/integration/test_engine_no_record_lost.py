"""Issue 9.1 in the engine itself, on the real broker: a failed transaction drops no record.

The processor: the changelog refuses a state that is too large for it, so the transaction of one start
command fails at commit; three approvals for other instances, sent right behind it on the same
partition, must still be applied, and the start must be dead-lettered alone with the reason.
The matcher: a malformed record with a 350 KB key and a 650 KB value (its dead letter cannot hold it
whole) followed by two valid transfers: both start their workflow, the bad record is dead-lettered,
truncated, with its coordinates and sizes.
"""

from __future__ import annotations

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from core import events as ev
from core.actors import SYSTEM, Actor
from core.builtin import builtin_template
from core.commands import RecordDecision, StartInstance
from schemas import topics
from tests.integration.engine_harness import EngineWorld
from tests.integration.test_engine import transfer

pytestmark = pytest.mark.asyncio(loop_scope="session")

MANAGER = Actor(id="u_manager", roles=("finance_manager",), tenant_id="t1")


@pytest.fixture
async def world(kafka_bootstrap):
    async with EngineWorld(kafka_bootstrap, partitions=1) as w:
        yield w


async def test_approvals_behind_a_start_the_changelog_refuses_are_applied(world):
    await world.publish_template("tpl_procurement", builtin_template("procurement_approval"))
    await world.start_engine()
    ids = []
    for n in range(3):
        await world.send_transfer(transfer(f"evt_{n}", 50_000))
        ids.append(world.event_instance_id("tpl_procurement", f"evt_{n}"))
    for instance_id in ids:
        await world.wait_for_event(instance_id, ev.ApprovalRequested, step=3)

    admin = AIOKafkaAdminClient(bootstrap_servers=world.bootstrap)
    await admin.start()
    try:
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, world.topic(
            topics.ENGINE_INSTANCES_CHANGELOG), configs={"max.message.bytes": "100000"})])
    finally:
        await admin.close()
    big = StartInstance(command_id="start-big", instance_id="wfi_big", issued_at=1, template_id="tpl_procurement",
                        template_version=1, tenant_id="t1", initiated_by=SYSTEM,
                        trigger={"amount": 500, "memo": "m" * 150_000, "metadata": {"type": "procurement"}})
    await world.send_command(big)
    for n, instance_id in enumerate(ids):
        await world.send_command(RecordDecision(command_id=f"decide-{n}", instance_id=instance_id, step=3,
                                                decision="approve", actor=MANAGER))
    for instance_id in ids:
        await world.wait_for_event(instance_id, ev.StepApproved, step=3, timeout=60)
    await world.wait_until(lambda: any(d.key == b"wfi_big" for d in world.dlq), message="the big start's letter")
    letter = next(d for d in world.dlq if d.key == b"wfi_big")
    assert letter.error_type == "uncommittable" and letter.consumer == "processor"
    assert "TooLarge" in letter.reason
    assert world.codec.decode(letter.value) == big


async def test_a_huge_malformed_transfer_is_dead_lettered_truncated_and_the_next_transfers_start(world):
    await world.publish_template("tpl_procurement", builtin_template("procurement_approval"))
    await world.start_engine()
    await world.send_raw(topics.PAYMENTS_TRANSFERS, b"{" + b"v" * 650_000, key=b"k" * 350_000)
    ids = []
    for n in range(2):
        await world.send_transfer(transfer(f"evt_after_{n}", 50_000))
        ids.append(world.event_instance_id("tpl_procurement", f"evt_after_{n}"))
    for instance_id in ids:
        await world.wait_for_event(instance_id, ev.InstanceStarted, timeout=60)
    await world.wait_until(lambda: len(world.dlq) == 1, message="the dead letter")
    letter = world.dlq[0]
    assert letter.source_topic == world.topic(topics.PAYMENTS_TRANSFERS) and letter.offset == 0
    assert letter.value.startswith(b"{vvv") and len(letter.key) < 350_000
    assert "at most 262144 are accepted" in letter.reason
    assert "key 350000 bytes, value 650001 bytes" in letter.reason
    assert f"{letter.source_topic}/0@0" in letter.reason
