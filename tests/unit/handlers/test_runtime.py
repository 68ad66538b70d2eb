"""Per-partition commit order of the handler runtime: commit only past records that are all done."""

from __future__ import annotations

from handlers.results import is_side_request
from handlers.runtime import OffsetTracker
from tests.unit.handlers.fakes import step_request


def test_a_finished_record_behind_an_unfinished_one_is_not_committable():
    tracker = OffsetTracker()
    for offset in (10, 11, 12):
        tracker.begin(offset)
    assert tracker.finish(11) is None
    assert tracker.finish(12) is None
    assert tracker.finish(10) == 13
    assert len(tracker) == 0


def test_the_commit_position_moves_one_record_at_a_time_in_order():
    tracker = OffsetTracker()
    tracker.begin(0)
    tracker.begin(1)
    assert tracker.finish(0) == 1
    assert tracker.finish(1) == 2


def test_gaps_in_offsets_from_transaction_markers_do_not_block_commits():
    tracker = OffsetTracker()
    tracker.begin(5)
    tracker.begin(7)  # offset 6 was a commit marker
    assert tracker.finish(7) is None
    assert tracker.finish(5) == 8


def test_failure_notices_and_escalations_are_side_requests_and_the_step_attempt_is_not():
    assert not is_side_request(step_request("notification", {}))
    assert is_side_request(step_request("notification", {}, suffix=":failure-notice"))
    assert is_side_request(step_request("approval", {}, suffix=":escalation-1"))


class CountingConsumer:
    """Stands in for the Kafka consumer: records what the runtime commits."""

    def __init__(self) -> None:
        self.commits: list[dict] = []

    async def commit(self, offsets) -> None:
        self.commits.append(dict(offsets))


class Record:
    def __init__(self, topic: str, partition: int, offset: int, value: bytes) -> None:
        self.topic, self.partition, self.offset, self.value = topic, partition, offset, value


async def test_an_idle_handler_does_not_wake_to_commit_and_commits_a_finished_record(monkeypatch):
    """Issue 15: the committer slept and woke five times a second on an idle handler, with nothing to commit.
    It now waits until a position moved, then commits within one interval."""
    import asyncio

    from aiokafka import TopicPartition

    from handlers import runtime as runtime_mod
    from handlers.runtime import HandlerRuntime
    from handlers.settings import HandlerSettings
    from schemas.codec import Codec

    codec = Codec()

    async def handle(request):
        return None  # nothing to publish: the record is simply done

    runtime = HandlerRuntime("notification", handle, HandlerSettings(commit_interval_ms=5), codec=codec,
                             producer=object())
    runtime.consumer = consumer = CountingConsumer()
    real_sleep = asyncio.sleep
    naps: list[float] = []

    async def counting_sleep(seconds, *args):
        naps.append(seconds)
        await real_sleep(seconds, *args)

    monkeypatch.setattr(runtime_mod.asyncio, "sleep", counting_sleep)
    committer = asyncio.create_task(runtime._commit_periodically())
    try:
        await real_sleep(0.2)  # forty commit intervals with nothing done
        assert naps == [] and consumer.commits == []

        tp = TopicPartition("workflow.steps.notification", 0)
        tracker = runtime_mod.OffsetTracker()
        runtime._trackers[tp] = tracker
        tracker.begin(7)
        await runtime._semaphore.acquire()  # as the loop does before it starts a record
        request = step_request("notification", {})
        await runtime._process(tp, tracker, Record(tp.topic, 0, 7, codec.encode(request)))
        for _ in range(200):
            if consumer.commits:
                break
            await real_sleep(0.01)
        assert consumer.commits == [{tp: 8}]
    finally:
        committer.cancel()
