"""The rules the adapters used to re-derive, now answered once in the core: which actions an actor may take
now (`core.actions`), and who is blocking (`core.blocking`, the same for the engine and the projector)."""

from __future__ import annotations

from core.actions import ADVANCE, CALLBACK, DECIDE, OPERATE, actions_now
from core.decide import blocking
from store.projection import blocking_info
from tests.unit.harness import HOUR, T0, Harness, human, workflow

ALL = {DECIDE, CALLBACK, ADVANCE, OPERATE}
APPROVAL = {"type": "approval", "name": "Sign-off",
            "config": {"approvers": {"type": "role", "value": "ops"}, "level": "DUAL", "timeout_hours": 1}}
PAY = {"type": "action", "name": "Pay", "config": {"action": "execute_transfer", "retry_config": {"max_retries": 0}}}


def names(actions):
    return [(a.action, a.step) for a in actions]


def test_an_approver_of_an_active_instance_may_decide_advance_pause_and_cancel():
    got = actions_now("ACTIVE", may=ALL, blocking={"waiting_for": "approval", "step": 2}, current_step=2,
                      decidable=(2, "CFO"))
    assert names(got) == [("approve", 2), ("reject", 2), ("advance", None), ("pause", None), ("cancel", None)]
    assert got[0].description == "approve step 2 (CFO)"


def test_nobody_decides_or_advances_a_paused_instance_but_an_operator_may_resume_or_cancel_it():
    got = actions_now("PAUSED", may=ALL, blocking={"waiting_for": "approval", "step": 2}, current_step=2,
                      decidable=(2, "CFO"))
    assert names(got) == [("resume", None), ("cancel", None)]


def test_a_callback_is_offered_only_while_the_step_awaits_one():
    waiting = actions_now("ACTIVE", may={CALLBACK}, blocking={"waiting_for": "callback", "step": 3},
                          current_step=3, decidable=None)
    assert names(waiting) == [("complete-external", 3)]
    assert actions_now("ACTIVE", may={CALLBACK}, blocking={"waiting_for": "handler", "step": 3}, current_step=3,
                       decidable=None) == []


def test_only_a_failed_instance_offers_retry_and_a_finished_one_offers_nothing_else():
    assert names(actions_now("FAILED", may=ALL, blocking={}, current_step=4, decidable=None)) == [("retry", 4)]
    assert actions_now("COMPLETED", may=ALL, blocking={}, current_step=5, decidable=None) == []


def test_rights_the_actor_lacks_are_never_offered():
    assert actions_now("ACTIVE", may=set(), blocking={"waiting_for": "callback", "step": 1}, current_step=1,
                       decidable=(1, "x")) == []


def test_engine_and_projector_say_the_same_about_who_is_blocking():
    h = Harness(workflow(APPROVAL, PAY))
    h.start({"amount": 10}, initiated_by=human("u_req"))
    h.approve(1, human("olga", "ops"))
    engine = blocking(h.state, h.template)
    projected = blocking_info(h.state, [{"name": "Sign-off", "type": "approval"}, {"name": "Pay", "type": "action"}])
    assert engine["next_timer"]["fire_at"] == T0 + HOUR
    assert projected["next_timer"]["fire_at"].startswith("20")  # ISO 8601 in the read model
    assert {k: v for k, v in projected.items() if k != "next_timer"} == {
        k: v for k, v in engine.items() if k != "next_timer"}
    assert (engine["remaining"], engine["required"], engine["decided_by"]) == (1, 2, ["olga"])
