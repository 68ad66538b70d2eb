"""Logs recorded by earlier releases still replay to the same state with today's `apply` (STYLE point 7)."""

from __future__ import annotations

import json

import pytest

from core.state import replay
from tests.unit.event_log import LOGS, event_from_json, to_json_as_recorded

FIXTURES = sorted(LOGS.glob("*.json"))


def test_there_are_recorded_logs_for_every_builtin_template():
    from core.builtin import BUILTIN_NAMES

    assert {path.stem for path in FIXTURES} >= set(BUILTIN_NAMES)


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_a_recorded_log_replays_to_its_recorded_final_state(path):
    log = json.loads(path.read_text())
    events = [event_from_json(e) for e in log["events"]]
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert to_json_as_recorded(replay(events), log["final_state"]) == log["final_state"]


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_events_survive_the_json_round_trip(path):
    log = json.loads(path.read_text())
    assert [to_json_as_recorded(event_from_json(e), e) for e in log["events"]] == log["events"]
