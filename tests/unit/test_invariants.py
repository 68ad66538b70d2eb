"""The invariant checker fault tests end with finds what it must (tests/integration/invariants.py)."""

from __future__ import annotations

from core import events as ev
from core.actors import SYSTEM
from tests.integration.invariants import check


def started(instance_id: str, seq: int = 1) -> ev.InstanceStarted:
    return ev.InstanceStarted(instance_id=instance_id, seq=seq, template_id="t", template_version=1, tenant_id="t1",
                              template_name="T", trigger={}, source="s", initiated_by=SYSTEM)


def step(instance_id: str, seq: int) -> ev.StepStarted:
    return ev.StepStarted(instance_id=instance_id, seq=seq, step=1, name="s", type="condition", attempt=1)


def test_a_clean_history_has_no_violation():
    events = {"a": [started("a"), step("a", 2), ev.InstanceCompleted(instance_id="a", seq=3)],
              "b": [started("b"), ev.CommandRejected(instance_id="b", command_type="X", reason="dup")]}
    assert check(events, finished=["a"], ledger=[{"idempotency_key": "k1"}, {"idempotency_key": "k2"}]) == []


def test_every_kind_of_violation_is_reported():
    events = {
        "gap": [started("gap"), step("gap", 3)],
        "twice": [started("twice"), started("twice", 2)],
        "two_ends": [started("two_ends"), ev.InstanceCompleted(instance_id="two_ends", seq=2),
                     ev.InstanceFailed(instance_id="two_ends", seq=3)],
        "after_end": [started("after_end"), ev.InstanceCompleted(instance_id="after_end", seq=2),
                      step("after_end", 3)],
    }
    problems = check(events, finished=["gap", "missing"], ledger=[{"idempotency_key": "k"}] * 2)
    assert any(p.startswith("gap: sequence [1, 3]") for p in problems)
    assert "twice: 2 InstanceStarted events" in problems
    assert "two_ends: 2 terminal events" in problems
    assert "after_end: events after its terminal event" in problems
    assert "gap: expected to have finished, but has no terminal event" in problems
    assert "missing: expected to have finished, but has no terminal event" in problems
    assert "payment k executed 2 times" in problems
