"""The handler runtime on the real broker: results keyed by instance, poison requests to the DLQ, and
offsets committed only past requests that are all done."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from handlers.results import succeeded
from handlers.runtime import HandlerRuntime
from schemas import topics
from tests.integration.engine_harness import EngineWorld
from tests.integration.handlers.support import Results, handler_settings, wait_ready
from tests.unit.handlers.fakes import step_request

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture
async def world(kafka_bootstrap):
    async with EngineWorld(kafka_bootstrap, partitions=1) as w:
        yield w


async def run(runtime: HandlerRuntime) -> asyncio.Task:
    task = asyncio.create_task(runtime.run())
    await wait_ready(lambda: runtime)
    return task


async def stop(runtime: HandlerRuntime, task: asyncio.Task) -> None:
    runtime.stop()
    with contextlib.suppress(BaseException):
        await asyncio.wait_for(task, 20)


async def read_all(world: EngineWorld, topic: str, count: int, timeout: float = 20) -> list:
    """(EngineWorld's own watcher stops at the poison record, so read the DLQ here.)"""
    consumer = AIOKafkaConsumer(world.topic(topic), bootstrap_servers=world.bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    found = []
    try:
        async with asyncio.timeout(timeout):
            while len(found) < count:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    found.extend(world.codec.decode(r.value) for r in records)
    finally:
        await consumer.stop()
    return found


async def committed(world: EngineWorld, group: str) -> int | None:
    consumer = AIOKafkaConsumer(bootstrap_servers=world.bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        return await consumer.committed(TopicPartition(world.topic(topics.step_topic("notification")), 0))
    finally:
        await consumer.stop()


async def test_results_are_published_keyed_by_instance_and_a_poison_request_goes_to_the_dlq(world):
    async def handle(request):
        return succeeded(request, {"echo": request.config["n"]})

    runtime = HandlerRuntime("notification", handle, handler_settings(world))
    task = await run(runtime)
    topic = topics.step_topic("notification")
    good = step_request("notification", {"n": 1}, instance_id="wfi_a")
    await world.send_raw(topic, b"\x00 this is not a step request", key=b"wfi_bad")
    await world.send_raw(topic, world.codec.encode(good), key=b"wfi_a")
    async with Results(world) as results:
        result = await results.wait_for(good.request_id)
        assert result.output == {"echo": 1} and result.step == good.step and result.attempt == good.attempt
        assert results.keys[0] == b"wfi_a"
    letters = await read_all(world, topics.WORKFLOW_DLQ, 1)
    assert letters[0].value == b"\x00 this is not a step request"
    assert letters[0].consumer == runtime.group_id
    await stop(runtime, task)


async def test_a_slow_request_holds_back_the_commit_of_faster_ones_behind_it(world):
    release = asyncio.Event()
    handled: list[int] = []

    async def handle(request):
        if request.config["n"] == 0:
            await release.wait()
        handled.append(request.config["n"])
        return succeeded(request)

    runtime = HandlerRuntime("notification", handle, handler_settings(world))
    task = await run(runtime)
    for n in range(5):
        request = step_request("notification", {"n": n}, instance_id=f"wfi_{n}")
        await world.send_raw(topics.step_topic("notification"), world.codec.encode(request), key=b"k")
    await world.wait_until(lambda: sorted(handled) == [1, 2, 3, 4], message="the fast ones handled")
    await asyncio.sleep(0.5)  # several commit intervals
    assert await committed(world, runtime.group_id) in (None, 0)
    release.set()
    await world.wait_until(lambda: len(handled) == 5, message="all handled")
    await asyncio.sleep(0.5)
    assert await committed(world, runtime.group_id) == 5
    await stop(runtime, task)


async def test_a_request_whose_result_cannot_be_published_is_dead_lettered_and_the_partition_flows(world):
    """Issue 9.1: a result too large for the broker, or one that does not encode, was retried forever (or
    left unfinished), holding back the commit of every request behind it; now the request goes to the DLQ
    with the reason and the requests behind it are committed."""

    async def handle(request):
        n = request.config["n"]
        if n == 1:
            return succeeded(request, {"blob": "x" * 2_000_000})  # bigger than any Kafka record may be
        if n == 2:
            return succeeded(request, {"not json": object()})  # does not encode
        return succeeded(request, {"echo": n})

    runtime = HandlerRuntime("notification", handle, handler_settings(world))
    task = await run(runtime)
    topic = topics.step_topic("notification")
    sent = [step_request("notification", {"n": n}, instance_id=f"wfi_{n}") for n in range(4)]
    for request in sent:
        await world.send_raw(topic, world.codec.encode(request), key=request.instance_id.encode())
    async with Results(world) as results:
        for n in (0, 3):
            assert (await results.wait_for(sent[n].request_id)).output == {"echo": n}
    letters = await read_all(world, topics.WORKFLOW_DLQ, 2)
    by_key = {letter.key: letter for letter in letters}
    assert "MessageSizeTooLarge" in by_key[b"wfi_1"].reason
    assert "could not be published" in by_key[b"wfi_2"].reason
    assert by_key[b"wfi_1"].value == world.codec.encode(sent[1])
    for _ in range(100):
        if await committed(world, runtime.group_id) == 4:
            break
        await asyncio.sleep(0.1)
    assert await committed(world, runtime.group_id) == 4
    await stop(runtime, task)


async def test_the_approval_handler_fetches_in_the_trailing_shape_and_a_handler_a_step_waits_for_at_once(world):
    """ADR 22: no step waits for the approval handler (it reports no result), so its busy fetch waits for
    bytes; every other kind's result is on its workflow's path. Both still get their requests."""
    from schemas.consumers import TRAILING

    seen: dict[str, list[str]] = {"approval": [], "notification": []}

    def handler_of(kind: str):
        async def handle(request):
            seen[kind].append(request.request_id)
            return None
        return handle

    runtimes = {kind: HandlerRuntime(kind, handler_of(kind), handler_settings(world)) for kind in seen}
    tasks = {kind: await run(runtime) for kind, runtime in runtimes.items()}
    try:
        requests = {kind: step_request(kind, {"n": 1}, instance_id=f"wfi_{kind}") for kind in seen}
        for kind, request in requests.items():
            await world.send_raw(topics.step_topic(kind), world.codec.encode(request), key=b"k")
        await world.wait_until(lambda: all(seen[k] == [requests[k].request_id] for k in seen),
                               message="each handler got its request")
        shapes = {kind: (r.consumer._fetcher._fetch_min_bytes, r.consumer._fetcher._fetch_max_wait_ms)
                  for kind, r in runtimes.items()}  # busy: each has just had a record
        assert shapes["approval"] == (TRAILING.min_bytes, TRAILING.wait_ms)
        assert shapes["notification"][0] == 1
    finally:
        for kind, runtime in runtimes.items():
            await stop(runtime, tasks[kind])
