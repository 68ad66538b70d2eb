"""The sweep's `FiredTimers` record in the instance processor (no broker): taken apart into one `FireTimer` per
timer, each decided exactly as if it had come alone, so that a timer fired twice, or one that lives on
another partition, is handled per timer (issue 15, docs/performance.md "State at scale")."""

from __future__ import annotations

import asyncio
import gc
import weakref
from dataclasses import dataclass

import pytest

from core import events as ev
from core.builtin import builtin_template
from core.commands import DueTimer, FiredTimers, FireTimer, StartInstance
from core.decide import decide
from core.template import compile_template, parse_template
from core.types import WorkflowStatus
from schemas.codec import Codec
from streams import processor as processor_mod
from streams.processor import InstanceProcessor
from streams.settings import EngineSettings
from streams.state_store import due_header
from streams.transactional import partition_for

codec = Codec()
TEMPLATE = compile_template(parse_template(builtin_template("procurement_approval"), template_id="tpl_procurement",
                                           version=1, tenant_id="t1", status=WorkflowStatus.ACTIVE))
PARTITIONS = 2


class Catalog:
    def get(self, template_id: str, version: int):
        return TEMPLATE

    async def catch_up(self) -> None:
        return None


@dataclass
class Consumed:
    """A consumed record as `process` reads it (the fields aiokafka's ConsumerRecord has that it uses)."""

    value: bytes
    offset: int
    topic: str
    partition: int = 0
    key: bytes | None = None
    timestamp: int = 0
    headers: tuple = ()


def ids_on(partition: int, count: int) -> list[str]:
    found, n = [], 0
    while len(found) < count:
        candidate = f"wfi_fired_{n:04d}"
        if partition_for(candidate.encode(), PARTITIONS) == partition:
            found.append(candidate)
        n += 1
    return found


@pytest.fixture
def processor(tmp_path):
    settings = EngineSettings(bootstrap_servers="127.0.0.1:1", app_id="app", partitions=PARTITIONS,
                              state_dir=str(tmp_path))
    processor = InstanceProcessor(settings, Catalog(), codec)
    processor.stores[0] = processor.open_store(0)
    yield processor
    asyncio.run(processor.close())


def waiting(processor: InstanceProcessor, instance_id: str) -> DueTimer:
    """An instance on partition 0 waiting for its approval; its armed approval timer."""
    state = decide(None, StartInstance(command_id=f"start:{instance_id}", instance_id=instance_id,
                                       template_id="tpl_procurement", template_version=1, tenant_id="t1",
                                       trigger={"amount": 50_000, "currency": "USD",
                                                "metadata": {"type": "procurement"}}), TEMPLATE, 1_000).state
    processor.stores[0].commit([(instance_id, state, codec.encode(state), due_header(state))], offset=None)
    timer = state.armed_timers()[0]
    return DueTimer(instance_id=instance_id, timer_id=timer.timer_id, fire_at=timer.fire_at)


def fired(processor: InstanceProcessor, offset: int, *timers: DueTimer) -> Consumed:
    return Consumed(codec.encode(FiredTimers(batch_id=f"0@1:{offset}", issued_at=2_000, timers=timers)), offset,
                    processor.settings.commands_topic)


def outcome(processor: InstanceProcessor, *records: Consumed):
    result = asyncio.run(processor.process(0, list(records)))
    result.on_commit()
    decoded = [(out.topic, codec.decode(out.value)) for out in result.records if out.value is not None]
    return decoded


def test_each_timer_of_a_fired_timers_record_is_decided_as_its_own_fire_timer(processor):
    timers = [waiting(processor, i) for i in ids_on(0, 3)]
    decoded = outcome(processor, fired(processor, 7, *timers))
    timed_out = {e.instance_id for _, e in decoded if isinstance(e, ev.StepTimedOut)}
    assert timed_out == {t.instance_id for t in timers}
    assert not any(isinstance(e, ev.CommandRejected) for _, e in decoded)
    # its command id is the one a lone FireTimer of that timer has: the two are the same fire
    assert FireTimer.of(timers[0].instance_id, timers[0].timer_id, timers[0].fire_at).command_id == \
        f"fire:{timers[0].timer_id}@{timers[0].fire_at}"
    assert processor._consumed[0] == 8 and not processor._deciding  # read and committed: refires may go


def test_a_timer_fired_twice_is_decided_once(processor):
    first, second = (waiting(processor, i) for i in ids_on(0, 2))
    outcome(processor, fired(processor, 1, first))
    # the same timer again (a refire, or a redelivered record), in a record with another timer, then alone
    decoded = outcome(processor, fired(processor, 2, first, second),
                      Consumed(codec.encode(FireTimer.of(first.instance_id, first.timer_id, first.fire_at)), 3,
                               processor.settings.commands_topic))
    rejected = [e for _, e in decoded if isinstance(e, ev.CommandRejected)]
    assert [e.instance_id for e in rejected] == [first.instance_id, first.instance_id]
    assert [e.instance_id for _, e in decoded if isinstance(e, ev.StepTimedOut)] == [second.instance_id]


def test_a_timer_of_another_partition_is_dead_lettered_alone(processor):
    here = waiting(processor, ids_on(0, 1)[0])
    elsewhere = DueTimer(instance_id=ids_on(1, 1)[0], timer_id="x:1:1:approval_timeout", fire_at=5)
    decoded = outcome(processor, fired(processor, 4, elsewhere, here))
    letters = [e for topic, e in decoded if topic == processor.settings.dlq_topic]
    assert len(letters) == 1 and letters[0].error_type == "wrong_partition"
    assert elsewhere.instance_id in letters[0].reason
    assert [e.instance_id for _, e in decoded if isinstance(e, ev.StepTimedOut)] == [here.instance_id]


def test_refires_wait_while_the_fires_are_unread_or_being_decided_and_not_once_they_were_dead_lettered(processor):
    timer = waiting(processor, ids_on(0, 1)[0])
    processor._fired[0] = 5  # the sweep's last fires for partition 0 are at offset 5
    assert processor._refires_wait(0)  # not read yet
    result = asyncio.run(processor.process(0, [fired(processor, 5, timer)]))
    assert processor._refires_wait(0)  # read, being decided: a copy now would only queue behind them
    result.on_abort()  # the transaction failed: the lane retries the record, or dead-letters it
    assert not processor._refires_wait(0)  # a dead-lettered fire is refired
    asyncio.run(processor.process(0, [fired(processor, 5, timer)])).on_commit()
    assert not processor._refires_wait(0)


def test_a_batch_decides_at_most_the_cap_and_requeues_the_rest_of_its_fires_as_they_are(processor, monkeypatch):
    """A burst's fires of one partition arrive in one batch: past `FIRE_CAP` timers, the further `FiredTimers`
    records are written back to the partition's commands in the same transaction, byte for byte, and the
    batch's other commands are still decided now (they do not wait behind the burst)."""
    monkeypatch.setattr(processor_mod, "FIRE_CAP", 3)
    *burst, alone = [waiting(processor, i) for i in ids_on(0, 9)]
    records = [fired(processor, offset, *burst[n:n + 2]) for offset, n in enumerate(range(0, 8, 2), 10)]
    records.append(Consumed(codec.encode(FireTimer.of(alone.instance_id, alone.timer_id, alone.fire_at)), 14,
                            processor.settings.commands_topic))
    result = asyncio.run(processor.process(0, records))
    commands = processor.settings.commands_topic
    requeued = [out for out in result.records if out.topic == commands]
    assert [(out.value, out.partition) for out in requeued] == [(r.value, 0) for r in records[2:4]]
    decoded = [codec.decode(out.value) for out in result.records if out.value is not None and out.topic != commands]
    timed_out = [e.instance_id for e in decoded if isinstance(e, ev.StepTimedOut)]
    assert timed_out == [t.instance_id for t in burst[:4]] + [alone.instance_id]
    result.written = {(commands, 0): 41}
    result.on_commit()
    assert processor._fired[0] == 41 and processor._refires_wait(0)  # refires wait for the requeued fires too
    # the next transaction takes the requeued records (now at offsets 40 and 41) and decides the rest
    again = [Consumed(out.value, offset, commands) for offset, out in enumerate(requeued, 40)]
    decoded = outcome(processor, *again)
    assert [e.instance_id for _, e in decoded if isinstance(e, ev.StepTimedOut)] == [t.instance_id for t in burst[4:]]
    assert not any(topic == commands for topic, _ in decoded) and not processor._refires_wait(0)


def test_a_committed_batch_is_freed_by_reference_counting_alone(processor):
    """The engine's cyclic collector runs rarely (streams/app.py): a batch that only it could free (a cycle
    between the result and its commit hook) kept a burst's decoded states and records alive, to 1 GB."""
    timer = waiting(processor, ids_on(0, 1)[0])
    gc.disable()
    try:
        result = asyncio.run(processor.process(0, [fired(processor, 3, timer)]))
        result.on_commit()
        gone = weakref.ref(result)
        del result
        assert gone() is None, "the batch's result lives on in a reference cycle"
    finally:
        gc.enable()
