"""The catalog check of ADR 7 shared by the lanes one poll woke, and begun as events are fetched (issue 15).

The lanes that a poll hands trigger events to each call `TemplateCatalog.catch_up` in the same turn of the
event loop; one ListOffsets request answers them all. A caller that comes once the request has begun must
not be answered by it: a template acknowledged between that request and the call would be missed (the
guarantee of docs/adr/0007). Real broker; the catalog's own request is counted and, in the second test,
held back after the broker answered, so the late caller's template is certain to postdate it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from core import events as ev
from schemas.records import TransferEvent
from tests.integration.engine_harness import EngineWorld

pytestmark = pytest.mark.asyncio(loop_scope="session")

DOC = {"name": "Shared check", "trigger_type": "on_transfer",
       "trigger_config": {"conditions": [{"field": "metadata.kind", "op": "eq", "value": "shared"}]},
       "steps": [{"type": "condition", "name": "Done", "config": {"expression": "true", "if_true": "complete"}}]}


def counted(catalog, hold: asyncio.Event | None = None) -> list[dict]:
    """Spy on the catalog's end offsets requests: each answer is recorded, the first one (with `hold`) is
    returned only once `hold` is set."""
    answers: list[dict] = []
    real = catalog._offsets.end_offsets

    async def end_offsets(partitions):
        ends = await real(partitions)
        answers.append(ends)
        if hold is not None and len(answers) == 1:
            await hold.wait()
        return ends

    catalog._offsets.end_offsets = end_offsets
    return answers


async def quiet(catalog) -> None:
    """Stop the catalog's once-a-second follower, so that only `catch_up` brings versions in."""
    catalog._task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await catalog._task


async def test_lanes_woken_together_share_one_request(kafka_bootstrap):
    async with EngineWorld(kafka_bootstrap, partitions=3) as world:
        engine = await world.start_engine()
        catalog = engine.catalog
        await quiet(catalog)
        answers = counted(catalog)
        await world.publish_template("tpl_shared", DOC)
        await asyncio.gather(*(catalog.catch_up() for _ in range(6)))
        assert len(answers) == 1
        assert catalog.get("tpl_shared", 1) is not None
        await catalog.catch_up()  # a later caller: a request of its own
        assert len(answers) == 2


async def test_a_caller_after_the_request_began_is_not_answered_by_it(kafka_bootstrap):
    async with EngineWorld(kafka_bootstrap, partitions=3) as world:
        engine = await world.start_engine()
        catalog = engine.catalog
        await quiet(catalog)
        hold = asyncio.Event()
        answers = counted(catalog, hold)
        first = asyncio.create_task(catalog.catch_up())
        while not answers:  # the first request was answered (and is held before it returns)
            await asyncio.sleep(0.01)
        await world.publish_template("tpl_late", DOC)  # acknowledged after that answer
        late = asyncio.create_task(catalog.catch_up())
        await asyncio.sleep(0.05)
        hold.set()
        await asyncio.gather(first, late)
        assert len(answers) == 2
        assert catalog.get("tpl_late", 1) is not None  # the late caller's check saw the version


def transfer(event_id: str, kind: str) -> TransferEvent:
    return TransferEvent(event_id=event_id, transfer_id=f"tr_{event_id}", event_type="transfer.created",
                         tenant_id="t1", amount_minor=100, currency="USD", currency_exponent=2,
                         source_account="acc_src", destination_account="acc_dst", metadata={"kind": kind},
                         occurred_at=int(time.time() * 1000))


def matching(kind: str) -> dict:
    return {**DOC, "name": f"Kind {kind}",
            "trigger_config": {"conditions": [{"field": "metadata.kind", "op": "eq", "value": kind}]}}


async def test_a_busy_lanes_next_batch_uses_the_check_begun_after_its_last_trigger_event(kafka_bootstrap):
    """Trigger events handed to a lane that is still committing begin their catalog check at once
    (`InstanceProcessor.fetched`), so the lane's next batch does not wait for one. Each later hand-over
    begins a newer check, and the batch uses the newest: one begun after its last event was fetched. A
    batch answered by an older check (here: begun before `tpl_x` was acknowledged) would not match e3."""
    async with EngineWorld(kafka_bootstrap, partitions=1) as world:
        await world.publish_template("tpl_a", matching("a"))
        engine = await world.start_engine()
        catalog = engine.catalog
        await quiet(catalog)
        worker = next(w for w in engine.workers if w.role == "processor")
        gate, holding = asyncio.Event(), asyncio.Event()
        commit = worker._commit

        async def held(partition, parts, outgoing):
            holding.set()
            await gate.wait()
            return await commit(partition, parts, outgoing)

        worker._commit = held
        answers = counted(catalog)
        await world.send_transfer(transfer("e1", "a"))
        await asyncio.wait_for(holding.wait(), 30)  # e1's batch was checked and decided; its commit waits
        checked = len(answers)
        await world.send_transfer(transfer("e2", "a"))  # handed to the busy lane: a check begins now
        await world.wait_until(lambda: len(answers) == checked + 1, message="e2's check answered")
        await world.publish_template("tpl_x", matching("x"))  # acknowledged after that answer
        await world.send_transfer(transfer("e3", "x"))
        await world.wait_until(lambda: len(answers) == checked + 2, message="e3's check answered")
        assert catalog.get("tpl_x", 1) is None  # known only through the check, not yet read
        gate.set()
        await world.wait_for_event(world.event_instance_id("tpl_x", "e3"), ev.InstanceStarted)
        for event_id in ("e1", "e2"):
            await world.wait_for_event(world.event_instance_id("tpl_a", event_id), ev.InstanceStarted)
        assert len(answers) == checked + 2  # the batch of e2 and e3 asked nothing more: it was checked ahead
