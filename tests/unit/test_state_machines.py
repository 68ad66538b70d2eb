"""State-machine templates (core/machine.py, core/machine_run.py): validation, the loop, requested and
automatic transitions, approvals, loops, the audit trail, `transitions_now` and `visualize`."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from core import commands as cmd
from core import events as ev
from core.builtin import builtin_template
from core.machine_run import transitions_now
from core.state import replay
from core.types import ActorKind, Awaiting, WorkflowStatus
from core.validation import validate_template, visualize
from tests.unit.harness import HOUR, Harness, agent, compiled, human

OFFICER_A = human("co_a", "compliance_officer")
OFFICER_B = human("co_b", "compliance_officer")
REQUESTER = human("u_req", "analyst")


def note(name: str) -> dict[str, Any]:
    return {"type": "notification", "name": name, "config": {"channel": "email", "to": "x@example.com",
                                                             "subject": name, "text": name}}


def machine(states: list[dict[str, Any]], transitions: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": "SM", "trigger_type": "manual", "states": states, "transitions": transitions}


def request(h: Harness, target: str, actor=OFFICER_A, reason: str = "why not") -> Any:
    return h.send(cmd.RequestTransition(command_id=h.next_command_id(), instance_id=h.instance_id, target=target,
                                        actor=actor, reason=reason))


def pointers(doc: dict[str, Any]) -> list[str]:
    return [p.pointer for p in validate_template(doc)]


def taken(h: Harness) -> list[tuple[str, str]]:
    return [(e.from_state, e.to_state) for e in h.events if isinstance(e, ev.TransitionTaken)]


def finish_notifications(h: Harness) -> None:
    """Answer every notification the route waits on (the handler's part)."""
    for _ in range(20):
        state = h.state
        if state.current is None or state.current.awaiting is not Awaiting.HANDLER:
            return
        h.succeed(state.current_step, {"sent": True})


# ------------------------------------------------------------------------------------------- validation

def test_builtin_state_machines_validate():
    assert validate_template(builtin_template("compliance_review_sm")) == []
    assert validate_template(builtin_template("model_deployment_sm")) == []


def test_unknown_states_are_reported_with_pointers():
    doc = machine([{"name": "a"}, {"name": "done", "terminal": "COMPLETED"}],
                  [{"from": "a", "to": "done"}, {"from": "a", "to": "nowhere"}, {"from": "ghost", "to": "done"}])
    assert {"/transitions/1/to", "/transitions/2/from"} <= set(pointers(doc))


def test_unreachable_state():
    doc = machine([{"name": "a"}, {"name": "island"}, {"name": "done", "terminal": "COMPLETED"}],
                  [{"from": "a", "to": "done"}, {"from": "island", "to": "done"}])
    problems = validate_template(doc)
    assert any(p.pointer == "/states/1" and "unreachable" in p.message for p in problems)


def test_no_way_to_a_terminal_state():
    doc = machine([{"name": "a"}, {"name": "trap"}, {"name": "done", "terminal": "COMPLETED"}],
                  [{"from": "a", "to": "done"}, {"from": "a", "to": "trap"}])
    problems = validate_template(doc)
    assert any(p.pointer == "/states/1" and "no way to a terminal" in p.message for p in problems)


def test_no_terminal_state_at_all():
    doc = machine([{"name": "a"}, {"name": "b"}], [{"from": "a", "to": "b"}, {"from": "b", "to": "a"}])
    assert "/states" in pointers(doc)


def test_terminal_state_with_outgoing_transitions():
    doc = machine([{"name": "a"}, {"name": "done", "terminal": "COMPLETED"}],
                  [{"from": "a", "to": "done"}, {"from": "done", "to": "a"}])
    problems = validate_template(doc)
    assert any(p.pointer == "/transitions/1/from" and "terminal" in p.message for p in problems)


def test_ambiguous_automatic_transitions():
    unconditional_first = machine(
        [{"name": "a"}, {"name": "b", "terminal": "COMPLETED"}, {"name": "c", "terminal": "FAILED"}],
        [{"from": "a", "to": "b", "automatic": True}, {"from": "a", "to": "c", "automatic": True,
                                                        "condition": "trigger.amount > 1"}])
    same_condition = machine(
        [{"name": "a"}, {"name": "b", "terminal": "COMPLETED"}, {"name": "c", "terminal": "FAILED"}],
        [{"from": "a", "to": "b", "automatic": True, "condition": "trigger.amount > 1"},
         {"from": "a", "to": "c", "automatic": True, "condition": "trigger.amount > 1"}])
    assert any("ambiguous" in p.message for p in validate_template(unconditional_first))
    assert any(p.pointer == "/transitions/1" and "ambiguous" in p.message for p in validate_template(same_condition))


def test_duplicate_names():
    doc = machine([{"name": "a"}, {"name": "a"}, {"name": "done", "terminal": "COMPLETED"}],
                  [{"from": "a", "to": "done"}, {"from": "a", "to": "done"}])
    found = pointers(doc)
    assert "/states/1/name" in found and "/transitions/1" in found


def test_all_problems_at_once_including_actions():
    doc = machine([{"name": "a", "entry_actions": [{"type": "teleport", "name": "x"}]},
                   {"name": "b", "bogus": 1}, {"name": "done", "terminal": "MAYBE"}],
                  [{"from": "a", "to": "zzz", "condition": "((("},
                   {"from": "a", "to": "done", "requires_approval": {"quorum": "two"}}])
    found = set(pointers(doc))
    assert {"/states/0/entry_actions/0/type", "/states/1/bogus", "/states/2/terminal", "/transitions/0/to",
            "/transitions/0/condition"} <= found
    assert any(p.startswith("/transitions/1/requires_approval") for p in found)


def test_step_list_templates_are_untouched():
    doc = builtin_template("procurement_approval")
    assert validate_template(doc) == []
    assert compiled(doc).machine is None


# ------------------------------------------------------------------------------------------------ running

def test_compliance_review_loops_twice_then_dual_approval():
    h = Harness(compiled(builtin_template("compliance_review_sm"), template_id="compliance_review_sm"))
    h.start({"id": "tr_9", "amount": 120})
    finish_notifications(h)
    assert h.state.machine_state == "under_review"
    for _ in range(2):
        request(h, "changes_requested", OFFICER_A, "missing invoice")
        finish_notifications(h)
        assert h.state.machine_state == "changes_requested"
        request(h, "under_review", REQUESTER, "invoice attached")
        finish_notifications(h)
        assert h.state.machine_state == "under_review"
    request(h, "approved", OFFICER_A, "all good")
    assert h.state.machine_state == "under_review" and h.state.pending_transition == "approved"
    approval = h.state.current_step
    h.approve(approval, OFFICER_A)
    assert h.status is WorkflowStatus.ACTIVE  # dual: one vote is not enough
    h.approve(approval, OFFICER_B)
    assert h.status is WorkflowStatus.COMPLETED
    assert taken(h) == [("", "submitted"), ("submitted", "under_review"),
                        ("under_review", "changes_requested"), ("changes_requested", "under_review"),
                        ("under_review", "changes_requested"), ("changes_requested", "under_review"),
                        ("under_review", "approved")]
    last = [e for e in h.events if isinstance(e, ev.TransitionTaken)][-1]
    assert last.actor.id == OFFICER_A.id and last.reason == "all good" and not last.automatic
    assert replay(h.events) == h.state


def test_rejected_approval_declines_the_transition_and_stays():
    h = Harness(compiled(builtin_template("compliance_review_sm")))
    h.start({"id": "tr_9"})
    finish_notifications(h)
    request(h, "approved", OFFICER_A)
    h.reject(h.state.current_step, OFFICER_B, "not yet")
    assert h.status is WorkflowStatus.ACTIVE
    assert h.state.machine_state == "under_review" and not h.state.pending_transition
    assert any(isinstance(e, ev.TransitionDeclined) for e in h.events)
    request(h, "rejected", OFFICER_B, "sanctions hit")
    assert h.status is WorkflowStatus.FAILED and "rejected" in h.state.failure


def test_requests_are_refused_with_reasons():
    h = Harness(compiled(builtin_template("compliance_review_sm")))
    h.start({"id": "tr_9"})
    d = request(h, "approved", OFFICER_A)  # the entry notification still runs
    assert d.rejected and "still running" in d.events[0].reason
    finish_notifications(h)
    assert request(h, "changes_requested", REQUESTER).events[0].reason.endswith(
        "role missing: needs one of compliance_officer")
    assert "none to 'production'" in request(h, "production").events[0].reason
    request(h, "approved", OFFICER_A)
    assert "approval pending" in request(h, "rejected", OFFICER_A).events[0].reason


def test_duplicate_request_is_a_no_op():
    h = Harness(compiled(builtin_template("compliance_review_sm")))
    h.start({"id": "tr_9"})
    finish_notifications(h)
    command = cmd.RequestTransition(command_id="once", instance_id=h.instance_id, target="changes_requested",
                                    actor=OFFICER_A)
    h.send(command)
    before = h.state
    again = h.send(command)
    assert again.rejected and "already applied" in again.events[0].reason
    assert h.state.machine_state == before.machine_state and h.state.steps == before.steps


def test_automatic_transitions_take_the_first_that_holds_in_order():
    doc = builtin_template("model_deployment_sm")
    low = Harness(compiled(doc))
    low.start({"validation_url": "https://v.test", "model": "m", "version": "1", "owner_email": "o@x.test"})
    low.succeed(1, {"status": 200, "body": {"metrics": {"auc": 0.5}}, "auc": 0.5})
    assert low.state.machine_state == "validation_failed" and low.status is WorkflowStatus.FAILED
    high = Harness(compiled(doc))
    high.start({"validation_url": "https://v.test", "model": "m", "version": "1", "owner_email": "o@x.test"})
    high.succeed(1, {"status": 200, "body": {"metrics": {"auc": 0.9}}})
    finish_notifications(high)
    assert high.state.machine_state == "staging"
    request(high, "canary", human("mr", "model_risk"), "signed off")
    high.approve(high.state.current_step, agent("agent_mrm", limits=False), "metrics fine")
    assert high.state.machine_state == "canary"
    assert request(high, "production", human("mr", "model_risk")).rejected  # the canary window runs
    high.fire_due_timers(2 * HOUR)
    request(high, "production", human("mr", "model_risk"), "canary clean")
    finish_notifications(high)
    assert high.status is WorkflowStatus.COMPLETED and high.state.machine_state == "production"
    auto = next(e for e in high.events if isinstance(e, ev.TransitionTaken) and e.to_state == "staging")
    assert auto.automatic and auto.actor.kind is ActorKind.SYSTEM


def test_agent_requests_are_recorded_as_agent():
    doc = machine([{"name": "a"}, {"name": "done", "terminal": "COMPLETED"}], [{"from": "a", "to": "done"}])
    h = Harness(compiled(doc))
    h.start({})
    request(h, "done", agent("agent_x"), "the invoice matches")
    last = [e for e in h.events if isinstance(e, ev.TransitionTaken)][-1]
    assert last.actor.kind is ActorKind.AGENT and last.reason == "the invoice matches"
    assert h.status is WorkflowStatus.COMPLETED


def test_exit_and_transition_actions_run_in_order():
    doc = machine([{"name": "a", "entry_actions": [note("enter a")], "exit_actions": [note("leave a")]},
                   {"name": "done", "terminal": "COMPLETED", "entry_actions": [note("enter done")]}],
                  [{"from": "a", "to": "done", "action": note("on the way")}])
    h = Harness(compiled(doc))
    h.start({})
    finish_notifications(h)
    request(h, "done")
    finish_notifications(h)
    started = [e.name for e in h.events if isinstance(e, ev.StepStarted)]
    assert started == ["enter a", "leave a", "on the way", "enter done"]
    assert h.status is WorkflowStatus.COMPLETED


def test_terminal_cancelled_state():
    doc = builtin_template("model_deployment_sm")
    h = Harness(compiled(doc))
    h.start({"validation_url": "https://v.test", "model": "m", "version": "1", "owner_email": "o@x.test"})
    h.succeed(1, {"status": 200, "body": {"metrics": {"auc": 0.9}}})
    finish_notifications(h)
    request(h, "canary", human("mr", "model_risk"))
    h.approve(h.state.current_step, human("mr2", "model_risk"))
    h.fire_due_timers(2 * HOUR)
    request(h, "rolled_back", human("mr", "model_risk"), "alerts firing")
    assert h.status is WorkflowStatus.CANCELLED


def test_a_step_list_template_takes_no_transition_requests():
    h = Harness("procurement_approval")
    h.start({"id": "t", "amount": 10})
    assert "step list" in request(h, "anything").events[0].reason


def test_transitions_now_says_why_not():
    h = Harness(compiled(builtin_template("compliance_review_sm")))
    h.start({"id": "tr_9"})
    finish_notifications(h)
    view = transitions_now(h.state, h.template, REQUESTER, h.now)
    assert view["state"] == "under_review"
    by_target = {t["to"]: t for t in view["transitions"]}
    assert not by_target["approved"]["available"] and "role missing" in by_target["approved"]["why_not"]
    officer = {t["to"]: t for t in transitions_now(h.state, h.template, OFFICER_A, h.now)["transitions"]}
    assert officer["approved"]["available"] and officer["approved"]["requires_approval"]
    request(h, "approved", OFFICER_A)
    pending = transitions_now(h.state, h.template, OFFICER_A, h.now)["transitions"]
    assert all("approval pending" in t["why_not"] for t in pending)


def test_condition_false_is_a_reason():
    doc = machine([{"name": "a"}, {"name": "done", "terminal": "COMPLETED"}],
                  [{"from": "a", "to": "done", "condition": "trigger.amount > 100"}])
    h = Harness(compiled(doc))
    h.start({"amount": 5})
    [item] = transitions_now(h.state, h.template, OFFICER_A, h.now)["transitions"]
    assert item["why_not"] == "condition 'trigger.amount > 100' is false"
    assert request(h, "done").rejected


def test_visualize_draws_a_state_diagram():
    drawing = visualize(builtin_template("compliance_review_sm"))
    assert drawing["mermaid"].startswith("stateDiagram-v2")
    assert "changes_requested --> under_review" in drawing["mermaid"]
    assert [t["to"] for t in drawing["adjacency"]["under_review"]] == ["changes_requested", "approved", "rejected"]


@pytest.mark.parametrize("name", ["compliance_review_sm", "model_deployment_sm"])
def test_builtins_are_fresh_copies(name):
    a = builtin_template(name)
    b = copy.deepcopy(a)
    a["states"].clear()
    assert builtin_template(name) == b


def test_blocking_says_a_resting_instance_waits_for_a_transition():
    from core.decide import blocking, blocking_text

    h = Harness(compiled(builtin_template("compliance_review_sm")))
    h.start({"id": "tr_9"})
    running = blocking(h.state, h.template)
    assert running["state"] == "under_review" and running["waiting_for"] == "handler"
    finish_notifications(h)
    resting = blocking(h.state, h.template)
    assert resting["waiting_for"] == "transition"
    assert blocking_text(h.state, h.template) == "state under_review waits for a requested transition"
    request(h, "approved", OFFICER_A)
    pending = blocking(h.state, h.template)
    assert pending["waiting_for"] == "approval" and pending["pending_transition"] == "approved"


# ------------------------------------------------------------------------- time-based transitions (issue 13)

def timed_review(**timing: Any) -> dict[str, Any]:
    """Under review; after a while in that state it escalates by itself (requested transitions too)."""
    return machine([{"name": "under_review", "entry_actions": [note("review please")]},
                    {"name": "escalated", "entry_actions": [note("escalated")]},
                    {"name": "done", "terminal": "COMPLETED"}],
                   [{"from": "under_review", "to": "done"},
                    {"from": "under_review", "to": "escalated", **timing},
                    {"from": "escalated", "to": "done"}])


def transition_timers(h: Harness) -> list:
    return [t for t in h.state.timers if t.purpose == "transition_due"]


def test_a_time_based_transition_fires_by_itself_exactly_once_and_audited():
    h = Harness(compiled(timed_review(after_hours=48)))
    h.start({})
    finish_notifications(h)
    [timer] = transition_timers(h)
    assert timer.fire_at == h.events[0].at + 48 * HOUR  # counted from entering the state
    assert not h.fire_due_timers(47 * HOUR)
    assert h.state.machine_state == "under_review"
    h.fire_due_timers(1 * HOUR)  # no command arrived: the timer alone moves it
    assert h.state.machine_state == "escalated"
    due = [e for e in h.events if isinstance(e, ev.TransitionDue)]
    assert [(e.from_state, e.to_state) for e in due] == [("under_review", "escalated")]
    moved = [e for e in h.events if isinstance(e, ev.TransitionTaken) and e.to_state == "escalated"]
    assert len(moved) == 1 and moved[0].automatic and moved[0].actor.kind is ActorKind.SYSTEM
    assert "48" in moved[0].reason
    assert transition_timers(h) == []
    again = h.fire(timer)  # the sweep re-sends a fired timer: a no-op
    assert again.rejected and "already applied" in again.events[0].reason
    h.advance(1)
    h.fire(timer.timer_id)  # and the same timer under another command id: no longer armed
    assert h.last_rejection == f"Timer {timer.timer_id} is no longer armed"
    assert replay(h.events) == h.state


def test_leaving_the_state_cancels_its_time_based_transition():
    h = Harness(compiled(timed_review(after_minutes=30)))
    h.start({})
    finish_notifications(h)
    [timer] = transition_timers(h)
    request(h, "done", reason="reviewed in time")
    assert h.status is WorkflowStatus.COMPLETED and transition_timers(h) == []
    assert h.fire(timer).rejected
    assert not [e for e in h.events if isinstance(e, ev.TransitionDue)]


def test_a_deadline_from_the_trigger_and_a_condition_checked_when_it_falls_due():
    doc = timed_review(at="{{trigger.review_by}}", condition="trigger.amount > 100")
    small = Harness(compiled(doc))
    small.start({"review_by": "2026-01-02T00:00:00Z", "amount": 5})
    finish_notifications(small)
    [timer] = transition_timers(small)
    assert timer.fire_at == 1767312000000
    small.fire_due_timers(2 * 24 * HOUR)
    assert small.state.machine_state == "under_review"  # came due, but its condition is false: it stays
    assert [e.to_state for e in small.events if isinstance(e, ev.TransitionDue)] == ["escalated"]
    big = Harness(compiled(doc))
    big.start({"review_by": "2026-01-02T00:00:00Z", "amount": 500})
    finish_notifications(big)
    big.fire_due_timers(2 * 24 * HOUR)
    assert big.state.machine_state == "escalated"


def test_a_transition_that_falls_due_while_entry_actions_run_is_taken_when_they_finish():
    h = Harness(compiled(timed_review(after_seconds=10)))
    h.start({})
    h.fire_due_timers(60_000)  # the entry notification has not answered yet
    assert h.state.machine_state == "under_review"
    finish_notifications(h)
    assert h.state.machine_state == "escalated"
    assert len([e for e in h.events if isinstance(e, ev.TransitionTaken) and e.to_state == "escalated"]) == 1


def test_re_entering_a_state_arms_a_fresh_timer():
    doc = machine([{"name": "waiting"}, {"name": "nudged"}, {"name": "done", "terminal": "COMPLETED"}],
                  [{"from": "waiting", "to": "nudged", "after_hours": 1},
                   {"from": "nudged", "to": "waiting"}, {"from": "nudged", "to": "done"}])
    h = Harness(compiled(doc))
    h.start({})
    first = transition_timers(h)[0]
    h.fire_due_timers(HOUR)
    request(h, "waiting", reason="try again")
    second = transition_timers(h)[0]
    assert second.timer_id != first.timer_id and second.fire_at == h.now + HOUR
    assert h.fire(first).rejected
    h.fire_due_timers(HOUR)
    assert h.state.machine_state == "nudged"


def test_time_based_transitions_are_validated():
    doc = machine([{"name": "a"}, {"name": "b", "terminal": "COMPLETED"}, {"name": "c", "terminal": "COMPLETED"}],
                  [{"from": "a", "to": "b", "after_hours": -1},
                   {"from": "a", "to": "c", "after_hours": 1, "at": "2026-01-01T00:00:00Z"}])
    assert pointers(doc) == ["/transitions/0/after_hours", "/transitions/1"]
    approval = machine([{"name": "a"}, {"name": "b", "terminal": "COMPLETED"}],
                       [{"from": "a", "to": "b", "after_hours": 1,
                         "requires_approval": {"approvers": {"type": "role", "value": "cfo"}}}])
    assert pointers(approval) == ["/transitions/0/requires_approval"]
    not_a_time = machine([{"name": "a"}, {"name": "b", "terminal": "COMPLETED"}],
                         [{"from": "a", "to": "b", "at": "next tuesday"}])
    assert pointers(not_a_time) == ["/transitions/0/at"]
    # a timed transition first does not make a later automatic one unreachable
    ordered = machine([{"name": "a"}, {"name": "b", "terminal": "COMPLETED"}, {"name": "c", "terminal": "COMPLETED"}],
                      [{"from": "a", "to": "b", "after_hours": 1},
                       {"from": "a", "to": "c", "automatic": True, "condition": "trigger.x == 1"}])
    assert pointers(ordered) == []


def test_transitions_now_and_blocking_show_when_a_timed_transition_falls_due():
    from core.blocking import blocking

    h = Harness(compiled(timed_review(after_hours=2)))
    h.start({})
    finish_notifications(h)
    by_target = {t["to"]: t for t in transitions_now(h.state, h.template, OFFICER_A, h.now)["transitions"]}
    assert by_target["escalated"]["due_at"] == h.events[0].at + 2 * HOUR
    assert not by_target["escalated"]["available"]
    info = blocking(h.state, [])
    assert info["waiting_for"] == "transition"
    assert info["next_timer"] == {"purpose": "transition_due", "fire_at": h.events[0].at + 2 * HOUR}


# ------------------------------------------------------------- agents on role-restricted transitions (issue 13)

def gated(**settings: Any) -> dict[str, Any]:
    doc = machine([{"name": "review"}, {"name": "approved", "terminal": "COMPLETED"}],
                  [{"from": "review", "to": "approved", "roles": ["compliance_officer"]}])
    if settings:
        doc["settings"] = settings
    return doc


def test_an_agent_with_the_role_and_within_its_bounds_may_take_a_role_restricted_transition():
    h = Harness(compiled(gated()))
    h.start({"amount": 900, "currency": "EUR"})
    bot = agent("agent_co", "compliance_officer", max_amount=1000, currencies=("EUR",))
    assert transitions_now(h.state, h.template, bot, h.now)["transitions"][0]["available"]
    request(h, "approved", bot, "documents verified by the agent")
    last = [e for e in h.events if isinstance(e, ev.TransitionTaken)][-1]
    assert last.actor.id == "agent_co" and last.actor.kind is ActorKind.AGENT
    assert last.reason == "documents verified by the agent"


@pytest.mark.parametrize(("bot", "why"), [
    (agent("a1"), "role missing: needs one of compliance_officer"),
    (agent("a2", "compliance_officer", limits=False), "a2 has no approval permission on this template"),
    (agent("a3", "compliance_officer", max_amount=100), "amount 900 is above a3's approval limit of 100"),
    (agent("a4", "compliance_officer", currencies=("USD",)), "a4 may only decide in USD, not EUR"),
    (agent("a5", "compliance_officer", hours=("02:00-03:00",)), "a5 may only decide within 02:00-03:00 UTC"),
])
def test_an_agent_outside_its_bounds_is_refused_with_the_reason(bot, why):
    h = Harness(compiled(gated()))
    h.start({"amount": 900, "currency": "EUR"})
    [item] = transitions_now(h.state, h.template, bot, h.now)["transitions"]
    assert not item["available"] and why in item["why_not"]
    assert request(h, "approved", bot).rejected and why in h.last_rejection
    assert h.state.machine_state == "review"


def test_separation_of_duties_applies_to_role_restricted_transitions():
    bot = agent("agent_co", "compliance_officer", max_amount=1000)
    h = Harness(compiled(gated()))
    h.start({"amount": 900}, initiated_by=bot)
    assert request(h, "approved", bot).rejected
    assert h.last_rejection.endswith("agent_co started this instance and cannot take a role-restricted "
                                     "transition on it")
    person = human("co_p", "compliance_officer")
    h2 = Harness(compiled(gated()))
    h2.start({"amount": 900}, initiated_by=person)
    assert request(h2, "approved", person).rejected and "started this instance" in h2.last_rejection
    off = Harness(compiled(gated(separation_of_duties=False)))
    off.start({"amount": 900}, initiated_by=bot)
    request(off, "approved", bot, "allowed here")
    assert off.status is WorkflowStatus.COMPLETED


def test_the_builtin_compliance_review_rejects_changes_not_supplied_within_a_week():
    h = Harness(compiled(builtin_template("compliance_review_sm")))
    h.start({"id": "tr_7"})
    finish_notifications(h)
    request(h, "changes_requested", OFFICER_A, "W-9 missing")
    finish_notifications(h)
    h.fire_due_timers(167 * HOUR)
    assert h.state.machine_state == "changes_requested"
    h.fire_due_timers(HOUR)
    assert h.state.machine_state == "rejected" and h.status is WorkflowStatus.FAILED
