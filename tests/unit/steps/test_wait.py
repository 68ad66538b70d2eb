"""Wait steps: until a time, for a duration, or until a condition holds; all durable timers (story 29.7)."""

from __future__ import annotations

from core import events as ev
from core.timers import parse_time_ms
from core.types import Awaiting, TaskStatus, WorkflowStatus
from tests.unit.harness import HOUR, T0, Harness, human, workflow

NEXT = {"type": "notification", "name": "Next", "config": {"channel": "webhook", "url": "https://x.test/h"}}


def wait(**config) -> dict:
    return {"type": "wait", "name": "Hold", "config": config}


def run(*steps, trigger=None) -> Harness:
    h = Harness(workflow(*steps))
    h.start(trigger or {})
    return h


def test_wait_for_a_duration_arms_a_timer_and_finishes_when_it_fires():
    h = run(wait(duration_minutes=30), NEXT)
    [timer] = h.timers()
    assert (timer.purpose, timer.fire_at) == ("wait_until", T0 + 30 * 60_000)
    assert h.step(1).awaiting is Awaiting.TIME
    h.fire_due_timers(30 * 60_000)
    assert h.step(1).output == {"waited_ms": 30 * 60_000}
    assert h.current_step == 2


def test_wait_until_an_iso_time_from_the_trigger():
    h = run(wait(until="{{trigger.execute_at}}"), NEXT, trigger={"execute_at": "2026-01-01T02:00:00Z"})
    assert h.timers()[0].fire_at == T0 + 2 * HOUR
    assert h.fire_due_timers(HOUR) == []
    h.fire_due_timers(HOUR)
    assert h.step_status(1) is TaskStatus.COMPLETED


def test_wait_until_epoch_milliseconds():
    h = run(wait(until=T0 + 5000), NEXT)
    assert h.timers()[0].fire_at == T0 + 5000


def test_wait_until_a_time_already_past_finishes_at_once():
    h = run(wait(until="2020-01-01T00:00:00Z"), NEXT)
    assert h.step(1).output == {"waited_ms": 0}
    assert h.current_step == 2


def test_wait_until_something_that_is_not_a_time_fails_the_instance():
    h = run(wait(until="{{trigger.missing}}"), NEXT)
    assert h.status is WorkflowStatus.FAILED
    assert "is not a time" in h.state.failure


def test_wait_for_a_condition_polls_until_it_holds():
    h = run({"type": "approval", "name": "Gate", "config": {"approvers": {"type": "role", "value": "ops"}}},
            wait(condition="now >= trigger.open_at", poll_interval_seconds=60), NEXT,
            trigger={"open_at": (T0 + 150_000) / 1000})
    h.approve(1, human("o", "ops"))
    assert h.step(2).awaiting is Awaiting.CONDITION
    h.fire_due_timers(60_000)
    h.fire_due_timers(60_000)
    assert [e.poll_at - T0 for e in h.events_of(ev.WaitPolled)] == [120_000, 180_000]
    assert h.step_status(2) is TaskStatus.IN_PROGRESS
    h.fire_due_timers(60_000)
    assert h.step_status(2) is TaskStatus.COMPLETED
    assert h.step(2).output == {"waited_ms": 180_000}


def test_a_condition_that_already_holds_does_not_wait():
    h = run(wait(condition="trigger.ready"), NEXT, trigger={"ready": True})
    assert h.step(1).output == {"waited_ms": 0}


def test_advance_finishes_a_wait_whose_condition_now_holds():
    h = run(wait(condition="now >= trigger.open_at", poll_interval_seconds=600), NEXT,
            trigger={"open_at": (T0 + 5000) / 1000})
    h.advance(1000)
    h.proceed()
    [checked] = h.last_events
    assert isinstance(checked, ev.AdvanceChecked)
    assert checked.blocking == "step 1 (Hold) waits for condition"
    h.advance(5000)
    h.proceed()
    assert h.step(1).status is TaskStatus.COMPLETED
    assert h.current_step == 2


def test_advance_finishes_a_time_wait_that_is_due():
    h = run(wait(duration_seconds=10), NEXT)
    h.advance(10_000)
    h.proceed()
    assert h.step_status(1) is TaskStatus.COMPLETED
    assert h.timers("wait_until") == []


def test_wait_timeout_fails_by_default():
    h = run(wait(condition="trigger.ready", poll_interval_seconds=1800, timeout_hours=1), NEXT)
    h.fire_due_timers(HOUR)
    assert h.step_status(1) is TaskStatus.TIMED_OUT
    assert h.status is WorkflowStatus.FAILED


def test_wait_timeout_can_continue():
    h = run(wait(condition="trigger.ready", poll_interval_seconds=1800, timeout_hours=1, on_timeout="continue"), NEXT)
    h.fire_due_timers(HOUR)
    assert h.step_status(1) is TaskStatus.TIMED_OUT
    assert h.current_step == 2
    assert h.timers() == []


def test_parse_time_accepts_iso_with_and_without_zone_and_numbers_but_not_booleans():
    assert parse_time_ms("2026-01-01T00:00:00Z") == T0
    assert parse_time_ms("2026-01-01T01:00:00+01:00") == T0
    assert parse_time_ms("2026-01-01T00:00:00") == T0
    assert parse_time_ms(T0) == T0
    assert parse_time_ms(True) is None
    assert parse_time_ms("soon") is None
    assert parse_time_ms(None) is None
