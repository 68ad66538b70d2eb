"""Inline starts (docs/adr/0014): the instance id that lands on the event's partition, and the assignor
property that makes partition p of a trigger topic go to the worker owning partition p of the state."""

from __future__ import annotations

import re

import pytest
from aiokafka.coordinator.assignors.range import RangePartitionAssignor

from core.triggers import instance_id_for, instance_id_on, start_command_id
from schemas.settings import env_flag
from streams.transactional import partition_for

ID = re.compile(r"wfi_[0-9a-f]{26}")  # the gateway accepts exactly this shape (gateway/instances.py)


def home(partitions: int):
    return lambda instance_id: partition_for(instance_id.encode(), partitions)


@pytest.mark.parametrize("partitions", [1, 3, 6, 12])
def test_the_id_lands_on_the_events_partition_in_todays_format(partitions):
    for n in range(200):
        source = f"event:payments.transfers:evt_{n}"
        for partition in range(partitions):
            instance_id = instance_id_on("tpl_a", source, partition, partitions, home(partitions))
            assert ID.fullmatch(instance_id)
            assert partition_for(instance_id.encode(), partitions) == partition


def test_todays_id_is_kept_when_it_already_lands_there():
    partitions = 6
    for n in range(50):
        source = f"event:payments.transfers:evt_{n}"
        today = instance_id_for("tpl_a", source)
        own = partition_for(today.encode(), partitions)
        assert instance_id_on("tpl_a", source, own, partitions, home(partitions)) == today
        others = {instance_id_on("tpl_a", source, p, partitions, home(partitions)) for p in range(partitions)
                  if p != own}
        assert today not in others and len(others) == partitions - 1


def test_a_redelivered_event_gets_the_same_id_and_command_id():
    first = instance_id_on("tpl_a", "event:payments.transfers:evt_1", 4, 6, home(6))
    again = instance_id_on("tpl_a", "event:payments.transfers:evt_1", 4, 6, home(6))
    assert first == again and start_command_id(first) == start_command_id(again)
    assert first != instance_id_on("tpl_b", "event:payments.transfers:evt_1", 4, 6, home(6))
    assert first != instance_id_on("tpl_a", "event:payments.transfers:evt_2", 4, 6, home(6))


def test_the_derivation_takes_about_partitions_tries():
    """Expected `partitions` hashes per id: count the partitioner's calls over many events."""
    calls = 0
    partitions = 6

    def counting(instance_id: str) -> int:
        nonlocal calls
        calls += 1
        return partition_for(instance_id.encode(), partitions)

    events = 3000
    for n in range(events):
        instance_id_on("tpl_a", f"event:t:evt_{n}", n % partitions, partitions, counting)
    assert 0.8 * partitions < calls / events < 1.2 * partitions


def test_a_partition_outside_the_topic_is_refused():
    with pytest.raises(ValueError):
        instance_id_on("tpl_a", "event:t:e", 6, 6, home(6))


class Cluster:
    def __init__(self, counts: dict[str, int]) -> None:
        self.counts = counts

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return set(range(self.counts[topic])) if topic in self.counts else None


def _assign(counts: dict[str, int], subscriptions: dict[str, list[str]]) -> dict[str, dict[str, list[int]]]:
    members = {member: RangePartitionAssignor.metadata(topics) for member, topics in subscriptions.items()}
    result = RangePartitionAssignor.assign(Cluster(counts), members)
    return {member: dict(assignment.assignment) for member, assignment in result.items()}


@pytest.mark.parametrize("workers", [1, 2, 3, 4, 5, 6, 7])
@pytest.mark.parametrize("partitions", [1, 3, 6, 12])
def test_the_range_assignor_gives_partition_p_of_every_topic_to_one_worker(workers, partitions):
    """Why the processor may consume the co-partitioned trigger topics in its own group: with one partition
    count and one subscription for every member, each member gets the same partition numbers of every topic,
    so the lane of partition p sees p's trigger events, commands and results, and owns p's state."""
    topics = ["workflow.commands", "workflow.step-results", "payments.transfers", "domain.accounts"]
    assigned = _assign(dict.fromkeys(topics, partitions), {f"m{n}": topics for n in range(workers)})
    owners: dict[int, str] = {}
    for member, by_topic in assigned.items():
        numbers = {topic: sorted(found) for topic, found in by_topic.items()}
        assert len({tuple(found) for found in numbers.values()}) <= 1, numbers
        for found in numbers.values():
            for p in found:
                assert owners.setdefault(p, member) == member
    assert sorted(owners) == list(range(partitions))


def test_a_member_with_another_subscription_breaks_the_alignment():
    """Why every engine of an installation must run one version with one FLOWLINE_ENGINE_INLINE_START (ADR
    13): a member that does not subscribe the trigger topic shifts that topic's ranges against the others'."""
    counts = {"workflow.commands": 6, "payments.transfers": 6}
    assigned = _assign(counts, {"a": ["workflow.commands"], "b": ["workflow.commands", "payments.transfers"]})
    assert assigned["b"]["payments.transfers"] != assigned["b"]["workflow.commands"]


@pytest.mark.parametrize(("value", "expected"), [("", True), ("on", True), ("1", True), ("TRUE", True),
                                                 ("off", False), ("0", False), ("no", False)])
def test_the_setting_reads_on_and_off(value, expected):
    assert env_flag("FLOWLINE_ENGINE_INLINE_START", {"FLOWLINE_ENGINE_INLINE_START": value}) is expected


def test_the_setting_refuses_anything_else():
    with pytest.raises(ValueError):
        env_flag("FLOWLINE_ENGINE_INLINE_START", {"FLOWLINE_ENGINE_INLINE_START": "maybe"})


def test_a_worker_whose_partitions_differ_between_topics_says_so(caplog):
    from aiokafka import TopicPartition

    from streams.positions import _check_aligned

    aligned = {TopicPartition(t, p) for t in ("workflow.commands", "payments.transfers") for p in (0, 1)}
    _check_aligned(aligned, "g")
    assert not caplog.records
    _check_aligned(aligned | {TopicPartition("payments.transfers", 2)}, "g")
    assert "do not all subscribe the same topics" in caplog.text
