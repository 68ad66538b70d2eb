"""The SDK's StateMachine builder writes time-based transitions the engine's validation accepts (and refuses
two times on one transition with the same pointer the server gives)."""

from __future__ import annotations

from flowline.prd import StateMachine


def test_time_based_transitions_from_the_builder():
    machine = StateMachine(None, "timed")  # type: ignore[arg-type] - building needs no client
    machine.add_state("under_review").add_state("escalated").add_state("done", terminal="COMPLETED")
    machine.add_transition("under_review", "done", roles=["operator"])
    machine.add_transition("under_review", "escalated", after_hours=48)
    machine.add_transition("escalated", "done", at="{{trigger.deadline}}")
    assert machine.validate_workflow() == []
    assert machine.document()["transitions"][1] == {"from": "under_review", "to": "escalated", "after_hours": 48}
    assert "after 48 hours in under_review" in machine.visualize()["mermaid"]
    machine.add_transition("done", "escalated", after_minutes=5, at="2026-01-01T00:00:00Z")
    assert "/transitions/3" in [p["pointer"] for p in machine.validate_workflow()]
