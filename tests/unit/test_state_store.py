"""The engine's on-disk state store (streams/state_store.py) without a broker: what it keeps, what it finds due."""

from __future__ import annotations

from dataclasses import replace

import pytest

from core.state import InstanceState, Timer
from core.types import WorkflowStatus
from schemas.codec import Codec
from streams.settings import EngineSettings
from streams.standby import standby_partitions
from streams.state_store import (
    OFFSETS_KEY,
    PartitionStore,
    Record,
    StateDir,
    decode_offsets,
    due_header,
    encode_offsets,
)

codec = Codec()


def waiting(instance_id: str, *, seq: int = 1, fire_at: int | None = None) -> InstanceState:
    timers = (Timer(timer_id=f"{instance_id}:1:1:approval_timeout", fire_at=fire_at, purpose="approval_timeout",
                    step=1, attempt=1),) if fire_at is not None else ()
    return InstanceState(instance_id=instance_id, template_id="tpl", template_version=1, tenant_id="t1",
                         status=WorkflowStatus.ACTIVE, current_step=1, timers=timers, seq=seq, updated_at=seq)


def change(state: InstanceState):
    return state.instance_id, state, codec.encode(state), due_header(state)


@pytest.fixture
def store(tmp_path):
    s = PartitionStore(tmp_path / "p0", codec, cache_size=2)
    yield s
    s.close()


def test_cache_eviction_does_not_lose_an_update(store, tmp_path):
    ids = [f"wfi_{n}" for n in range(5)]
    store.commit([change(waiting(i, seq=1)) for i in ids], offset=5)
    for round_ in (2, 3):  # every update goes through a cache of two: most are evicted right after
        for i in ids:
            store.commit([change(waiting(i, seq=round_))], offset=5 + round_)
    assert store.cached == 2
    assert [store.get(i).seq for i in ids] == [3] * 5
    store.close()
    reopened = PartitionStore(tmp_path / "p0", codec, cache_size=2)
    try:
        assert [reopened.get(i).seq for i in ids] == [3] * 5
        assert reopened.offset == 8
    finally:
        reopened.close()


def test_a_forgotten_instance_is_gone_from_disk_and_cache(store):
    state = waiting("wfi_gone")
    store.commit([change(state)], offset=1)
    assert store.get("wfi_gone") == state
    store.commit([("wfi_gone", None, None, None)], offset=2)
    assert store.get("wfi_gone") is None and "wfi_gone" not in store and len(store) == 0


def test_timers_come_due_from_the_index_once_and_are_refired_only_while_armed(store):
    store.commit([change(waiting("wfi_a", fire_at=1_000)), change(waiting("wfi_b", fire_at=2_000))], offset=2)
    assert store.due_timers(999, refire_after_ms=5_000) == []
    assert store.due_timers(1_500, refire_after_ms=5_000) == [("wfi_a", "wfi_a:1:1:approval_timeout", 1_000)]
    assert store.due_timers(1_500, refire_after_ms=5_000) == []  # moved to its refire time, 6,500
    assert store.next_due() == 2_000
    # wfi_a's timer fired (its state no longer arms it): the refire entry is dropped, not sent
    store.commit([change(waiting("wfi_a", seq=2))], offset=3)
    assert store.due_timers(10_000, refire_after_ms=5_000) == [("wfi_b", "wfi_b:1:1:approval_timeout", 2_000)]
    # still armed (its FireTimer not decided yet): sent again after 5 s, then after 10 s, ...
    assert store.due_timers(14_999, refire_after_ms=5_000) == []
    assert store.due_timers(15_000, refire_after_ms=5_000) == [("wfi_b", "wfi_b:1:1:approval_timeout", 2_000)]
    assert store.due_timers(24_999, refire_after_ms=5_000) == []
    assert store.due_timers(25_000, refire_after_ms=5_000) == [("wfi_b", "wfi_b:1:1:approval_timeout", 2_000)]


def test_a_paused_instance_has_no_due_timer(store):
    paused = replace(waiting("wfi_p", fire_at=1_000), status=WorkflowStatus.PAUSED)
    store.commit([change(paused)], offset=1)
    assert store.due_timers(5_000) == []


def test_finished_instances_are_found_by_end_time_without_reading_states(store):
    done = replace(waiting("wfi_done"), status=WorkflowStatus.COMPLETED, updated_at=1_000)
    store.commit([change(done), change(waiting("wfi_running"))], offset=2)
    assert store.expired(999) == []
    assert store.expired(1_000) == [("wfi_done", 1_000)]
    store.commit([("wfi_done", None, None, None)], offset=3)
    assert store.expired(5_000) == []


def test_a_raw_record_without_the_due_header_is_indexed_by_decoding_it(store):
    state = waiting("wfi_old", fire_at=500)
    store.apply([Record(b"wfi_old", codec.encode(state), None)], offset=10)
    assert store.offset == 10 and store.get("wfi_old") == state
    assert store.due_timers(600) == [("wfi_old", "wfi_old:1:1:approval_timeout", 500)]


def test_two_workers_on_one_host_take_different_slots_and_a_restart_takes_the_first_again(tmp_path):
    first, second = StateDir(tmp_path, "app"), StateDir(tmp_path, "app")
    assert first.path != second.path
    first.release()
    again = StateDir(tmp_path, "app")
    assert again.path == first.path
    again.release()
    second.release()


def test_a_store_that_does_not_open_is_replaced_by_an_empty_one(tmp_path):
    from streams.catalog import TemplateCatalog
    from streams.processor import InstanceProcessor

    settings = EngineSettings(bootstrap_servers="127.0.0.1:1", app_id="app", state_dir=str(tmp_path))
    processor = InstanceProcessor(settings, TemplateCatalog(bootstrap_servers="x", topic="t", decode=codec.decode),
                                  codec)
    path = processor.state_dir().partition(0)
    store = processor.open_store(0)
    store.commit([change(waiting("wfi_x"))], offset=1)
    store.close()
    for name in path.iterdir():  # corrupt every file of the store
        if name.is_file():
            name.write_bytes(b"\x00garbage" * 10)
    store = processor.open_store(0)
    try:
        assert store.offset is None and store.get("wfi_x") is None
    finally:
        store.close()
        processor.state_dir().release()


@pytest.mark.parametrize(("owned", "total", "replicas", "expected"), [
    ({0, 1}, 4, 1, {2, 3}),
    ({2, 3}, 4, 1, {0, 1}),
    ({0, 1, 2, 3}, 4, 1, set()),  # a lone worker owns everything
    ({2, 3}, 6, 1, {4, 5}),
    ({2}, 3, 1, {0, 1}),  # two workers on three partitions: the other one holds two
    ({4}, 6, 1, {5, 0}),  # four workers on six (2, 2, 1, 1): the next blocks are at most two long
    ({5}, 6, 1, {0, 1}),
    ({4, 5}, 6, 2, {0, 1, 2, 3}),
    (set(), 6, 1, set()),
    ({0, 1}, 4, 0, set()),
])
def test_a_worker_shadows_the_next_blocks_of_partitions(owned, total, replicas, expected):
    assert standby_partitions(owned, total, replicas) == expected


def test_the_offsets_record_is_kept_apart_from_the_states(store):
    """ADR 13: the changelog's consumed-offsets record, read by a restore or a standby (`apply`) or written
    with a committed batch (`commit`), is the store's `consumed`, never an instance."""
    first = encode_offsets({("workflow.commands", 0): 7, ("workflow.step-results", 0): 3})
    store.apply([Record(b"wfi_a", codec.encode(waiting("wfi_a")), b""), Record(OFFSETS_KEY, first, None)], 2)
    assert list(store.ids()) == ["wfi_a"] and len(store) == 1
    assert store.get(OFFSETS_KEY.decode()) is None
    assert store.consumed == {("workflow.commands", 0): 7, ("workflow.step-results", 0): 3}
    later = encode_offsets({("workflow.commands", 0): 9, ("workflow.step-results", 0): 3})
    store.commit([change(waiting("wfi_b"))], 4, later)
    assert sorted(store.ids()) == ["wfi_a", "wfi_b"]
    assert store.consumed == decode_offsets(later) and store.offset == 4
    store.apply([Record(OFFSETS_KEY, None, None)], 5)  # a tombstone: the changelog has no offsets any more
    assert store.consumed == {} and len(store) == 2
