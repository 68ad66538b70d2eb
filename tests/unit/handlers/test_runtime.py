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
