"""Bad input on every input topic of the engine and the handlers (issue 9, "Suites that keep them found").

Malformed, truncated, wrong-schema, wrong-type and oversized records go to `workflow.dlq`, each with a
reason and its original bytes (or, past the letter's bound, a cut copy with the sizes), and the record
produced right behind them is processed: the partition keeps flowing. The projector's topic is covered
by tests/integration/test_projector_dlq.py.
"""

from __future__ import annotations

import json
import os

import pytest

from core import events as ev
from core.commands import ReportStepResult
from handlers.results import succeeded
from handlers.runtime import HandlerRuntime
from schemas import topics
from schemas.records import DlqRecord, TemplateRecord
from tests.integration.engine_harness import EngineWorld
from tests.integration.handlers.support import Results, handler_settings
from tests.integration.handlers.test_runtime import read_all, run, stop
from tests.integration.test_engine import transfer
from tests.unit.handlers.fakes import step_request

pytestmark = pytest.mark.asyncio(loop_scope="session")

OVERSIZED = 900_000  # below the broker's 1 MiB record limit, far above anything valid


def _template_record(world: EngineWorld) -> bytes:
    return world.codec.encode(TemplateRecord(template_id="x", version=1, tenant_id="t1", name="x", status="ACTIVE",
                                             document={}, updated_at=0))


def bad_records(world: EngineWorld, topic: str) -> dict[str, bytes]:
    """The bad inputs for one topic, by kind."""
    if topic == topics.PAYMENTS_TRANSFERS:
        valid = world.codec.encode(transfer("evt_model", 100))
        wrong_type = json.dumps({"event_id": "e", "tenant_id": "t1", "amount_minor": "lots",
                                 "currency": "USD"}).encode()
    else:
        valid = world.codec.encode(ReportStepResult(command_id="c", instance_id="wfi_x", step=1, attempt=1,
                                                    outcome="succeeded"))
        wrong_type = world.codec.encode(step_request("approval", {}))  # a valid Avro record, not a command
    return {
        "malformed": b"{not json at all",
        "truncated": valid[: len(valid) // 2],
        "wrong-schema": _template_record(world),
        "wrong-type": wrong_type,
        "oversized": b"\xc3\x01" + os.urandom(OVERSIZED),
    }


@pytest.mark.parametrize("topic", [topics.PAYMENTS_TRANSFERS, topics.WORKFLOW_COMMANDS, topics.WORKFLOW_STEP_RESULTS])
async def test_bad_records_on_an_engine_input_topic_are_dead_lettered_and_the_partition_flows(kafka_bootstrap, topic):
    async with EngineWorld(kafka_bootstrap, partitions=1) as world:
        await world.publish_template("tpl_any", {
            "name": "Any", "trigger_type": "on_transfer", "trigger_config": {},
            "steps": [{"type": "condition", "name": "Done", "config": {"expression": "true", "if_true": "complete"}}]})
        await world.start_engine()
        bad = bad_records(world, topic)
        for kind, value in bad.items():
            await world.send_raw(topic, value, key=kind.encode())
        if topic == topics.PAYMENTS_TRANSFERS:
            await world.send_transfer(transfer("evt_behind", 100))
            await world.wait_for_event(world.event_instance_id("tpl_any", "evt_behind", topic), ev.InstanceStarted)
        else:
            await world.send_command(ReportStepResult(command_id="behind", instance_id="wfi_behind", step=1,
                                                      attempt=1, outcome="succeeded"), topic=topic)
            await world.wait_for_event("wfi_behind", ev.CommandRejected)
        await world.wait_until(lambda: len(world.dlq) >= len(bad), message="every bad record dead-lettered")
        letters: dict[bytes, DlqRecord] = {letter.key: letter for letter in world.dlq}
        assert set(letters) == {kind.encode() for kind in bad}
        for kind, value in bad.items():
            letter = letters[kind.encode()]
            assert letter.reason and letter.source_topic == world.topic(topic), letter.reason
            if kind == "oversized" and topic == topics.PAYMENTS_TRANSFERS:
                assert "at most 262144 are accepted" in letter.reason
            assert letter.value == value or "truncated" in letter.reason


async def test_bad_records_on_a_handler_topic_are_dead_lettered_and_the_partition_flows(kafka_bootstrap):
    async with EngineWorld(kafka_bootstrap, partitions=1) as world:
        async def handle(request):
            return succeeded(request, {"n": request.config["n"]})

        runtime = HandlerRuntime("notification", handle, handler_settings(world))
        task = await run(runtime)
        topic = topics.step_topic("notification")
        good = step_request("notification", {"n": 1}, instance_id="wfi_good")
        encoded = world.codec.encode(good)
        bad = {"malformed": b"{not json", "truncated": encoded[: len(encoded) // 2],
               "wrong-schema": _template_record(world),
               "wrong-type": world.codec.encode(ReportStepResult(command_id="c", instance_id="i", step=1, attempt=1,
                                                                  outcome="succeeded")),
               "oversized": b"\xc3\x01" + os.urandom(OVERSIZED)}
        for kind, value in bad.items():
            await world.send_raw(topic, value, key=kind.encode())
        await world.send_raw(topic, encoded, key=b"wfi_good")
        async with Results(world) as results:
            assert (await results.wait_for(good.request_id)).output == {"n": 1}
        letters = await read_all(world, topics.WORKFLOW_DLQ, len(bad))
        assert {letter.key for letter in letters} == {kind.encode() for kind in bad}
        assert all(letter.reason and letter.consumer == runtime.group_id for letter in letters)
        await stop(runtime, task)
