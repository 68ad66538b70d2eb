"""Issue 9.9 on the real broker: an error while deciding one instance fails that instance (it exists, it
says why, its on_failure applied); it never makes the instance vanish into the DLQ."""

from __future__ import annotations

import pytest

from core import events as ev
from core.commands import StartInstance
from tests.integration.engine_harness import EngineWorld

pytestmark = pytest.mark.asyncio(loop_scope="session")

NOTICE = {"type": "notification", "name": "Tell", "config": {"channel": "webhook", "url": "https://x.test/h"}}


@pytest.fixture
async def world(kafka_bootstrap):
    async with EngineWorld(kafka_bootstrap) as w:
        yield w


def start(instance_id: str, template_id: str, trigger: dict) -> StartInstance:
    return StartInstance(command_id=f"start:{instance_id}", instance_id=instance_id, template_id=template_id,
                         template_version=1, tenant_id="t1", trigger=trigger)


async def test_a_condition_that_formats_a_data_string_fails_its_instance_which_exists(world):
    await world.publish_template("tpl_fmt", {"name": "fmt", "trigger_type": "manual", "steps": [
        {"type": "condition", "name": "Check", "config": {"expression": "trigger.fmt % trigger == 'x'"}}, NOTICE]})
    await world.start_engine()
    await world.send_command(start("wfi_fmt", "tpl_fmt", {"fmt": "%(nope)s"}))
    failed = await world.wait_for_event("wfi_fmt", ev.InstanceFailed)
    assert "formats strings" in failed.reason
    assert world.events["wfi_fmt"][0].__class__ is ev.InstanceStarted
    assert world.dlq == []


async def test_the_engines_last_resort_fails_the_instance_when_decide_itself_raises(world, monkeypatch):
    import streams.processor as processor

    def broken(*args, **kwargs):
        raise RuntimeError("a bug in the core")

    monkeypatch.setattr(processor, "decide", broken)  # our own code misbehaving; the broker is real
    await world.publish_template("tpl_bug", {"name": "bug", "trigger_type": "manual", "steps": [
        {"type": "wait", "name": "Pause", "config": {"duration_seconds": 60}}]})  # on_failure: fail_workflow
    await world.start_engine()
    await world.send_command(start("wfi_bug", "tpl_bug", {}))
    failed = await world.wait_for_event("wfi_bug", ev.InstanceFailed)
    assert "a bug in the core" in failed.reason
    await world.wait_until(lambda: len(world.dlq) == 1, message="the record is also parked with the reason")
