"""Maker-checker suite: no sequence of votes, escalations, timeouts and agents approves a step with fewer
distinct eligible approvers than its level requires (issue 10.2 and docs/security.md).

The rules under test (core/steps/approval.py): an escalation goes only to the template's target; an approver
who voted cannot escalate; votes cast before an escalation stay on record but stop counting, so the
escalated approvers make the whole quorum; nobody votes twice on one step; whoever started the instance
may not approve it (unless the template turns separation of duties off); an agent decides only within its
permission. There is no delegation feature: handing a decision on is an escalation.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from core import events as ev
from core.commands import EscalateApproval
from core.types import Awaiting, TaskStatus
from tests.unit.harness import HOUR, Harness, agent, human, workflow

CFO = {"type": "role", "value": "cfo"}
FM = {"type": "role", "value": "finance_manager"}
PAY = {"type": "notification", "name": "Done", "config": {"channel": "webhook", "url": "https://x.test/h"}}
ALICE, CAROL, DAVE = human("alice", "cfo"), human("carol", "cfo"), human("dave", "cfo")
BOB, BEA = human("bob", "finance_manager"), human("bea", "finance_manager")
BOTH = human("zed", "cfo", "finance_manager")
ADMIN = human("root", "workflow_admin")


def step(level: str = "DUAL", **config) -> dict:
    return {"type": "approval", "name": "CFO sign-off", "config": {"approvers": CFO, "level": level, **config}}


def started(*steps, initiated_by=None) -> Harness:
    h = Harness(workflow(*steps, PAY))
    h.start({"id": "tr_1", "amount": 500}, **({"initiated_by": initiated_by} if initiated_by else {}))
    return h


def escalate(h: Harness, actor, approvers=None):
    return h.send(EscalateApproval(command_id=h.next_command_id(), instance_id=h.instance_id, step=1,
                                   approvers=approvers, actor=actor))


class TestTheReportedBypass:
    def test_a_voter_cannot_escalate_to_a_role_of_their_choice_and_have_it_count(self):
        h = started(step())
        h.approve(1, ALICE)
        escalate(h, ALICE, FM)  # the attack as reported: the caller names finance_manager
        assert "template" in h.last_rejection or "already voted" in h.last_rejection
        h.approve(1, BOB)
        assert "not among the approvers" in h.last_rejection
        assert h.step(1).awaiting is Awaiting.APPROVAL

    def test_a_voter_cannot_escalate_even_to_the_templates_own_target(self):
        h = started(step(escalate_to=FM))
        h.approve(1, ALICE)
        escalate(h, ALICE)
        assert "alice already voted on step 1" in h.last_rejection

    def test_the_caller_never_chooses_the_target(self):
        h = started(step(escalate_to=FM))
        escalate(h, CAROL, {"type": "role", "value": "intern"})
        assert "escalates to role finance_manager (the template's target)" in h.last_rejection
        escalate(h, CAROL, FM)  # naming exactly the template's target is fine
        assert h.step(1).approvers == FM

    def test_a_step_without_an_escalation_target_cannot_be_escalated_by_hand(self):
        h = started(step())
        escalate(h, CAROL, FM)
        assert "names no escalation target" in h.last_rejection

    def test_after_an_escalation_one_earlier_vote_plus_one_new_is_not_two(self):
        h = started(step(escalate_to=FM))
        h.approve(1, ALICE)
        escalate(h, CAROL)  # a CFO who has not voted hands it on
        h.approve(1, BOB)
        assert h.step(1).awaiting is Awaiting.APPROVAL
        h.approve(1, BEA)
        assert h.step_status(1) is TaskStatus.APPROVED
        assert h.events_of(ev.StepApproved)[0].approved_by == ("bob", "bea")


class TestEveryLevel:
    def test_single_after_a_timeout_escalation_needs_one_escalated_approver(self):
        h = started(step("SINGLE", timeout_hours=1, on_timeout={"action": "escalate", "approvers": FM}))
        h.fire_due_timers(HOUR)
        h.approve(1, ALICE)
        assert "not among the approvers" in h.last_rejection
        h.approve(1, BOB)
        assert h.step_status(1) is TaskStatus.APPROVED

    def test_dual_after_a_timeout_escalation_needs_two_escalated_approvers(self):
        h = started(step(timeout_hours=1, on_timeout={"action": "escalate", "approvers": FM}))
        h.approve(1, ALICE)
        h.fire_due_timers(HOUR)
        h.approve(1, BOB)
        assert h.step(1).awaiting is Awaiting.APPROVAL
        h.approve(1, BEA)
        assert h.step_status(1) is TaskStatus.APPROVED

    def test_committee_quorum_is_made_again_after_an_escalation(self):
        members = {"type": "user", "value": ["m1", "m2", "m3"]}
        board = {"type": "user", "value": ["b1", "b2", "b3"]}
        h = started({"type": "approval", "name": "Committee", "config": {
            "approvers": members, "level": "COMMITTEE", "quorum": 2, "escalate_to": board}})
        h.approve(1, human("m1"))
        escalate(h, human("m2"))
        h.approve(1, human("b1"))
        assert h.step(1).awaiting is Awaiting.APPROVAL  # m1's vote no longer counts
        h.approve(1, human("b2"))
        assert h.step_status(1) is TaskStatus.APPROVED

    def test_committee_rejection_counts_only_votes_after_the_escalation(self):
        board = {"type": "user", "value": ["b1", "b2", "b3"]}
        h = started({"type": "approval", "name": "Committee", "config": {
            "approvers": {"type": "user", "value": ["m1", "m2", "m3"]}, "level": "COMMITTEE", "quorum": 2,
            "escalate_to": board}})
        h.reject(1, human("m1"))
        escalate(h, human("m2"))
        h.reject(1, human("b1"))
        assert h.step(1).awaiting is Awaiting.APPROVAL  # 2 of 3 board members can still approve
        h.reject(1, human("b2"))
        assert h.step_status(1) is TaskStatus.REJECTED

    def test_nobody_votes_twice_on_a_step_across_an_escalation(self):
        h = started(step(escalate_to=FM))
        h.approve(1, BOTH)  # zed is a CFO and a finance manager
        escalate(h, CAROL)
        h.approve(1, BOTH)
        assert "zed already decided step 1" in h.last_rejection

    def test_a_second_manual_escalation_beyond_the_templates_allowance_is_refused(self):
        h = started(step(escalate_to=FM))
        escalate(h, CAROL)
        escalate(h, ADMIN)
        assert "allows 1" in h.last_rejection


class TestWhoMayDecide:
    def test_the_requester_cannot_approve_their_own_instance(self):
        h = started(step("SINGLE"), initiated_by=ALICE)
        h.approve(1, ALICE)
        assert "started this instance" in h.last_rejection

    def test_an_agent_that_started_the_instance_cannot_approve_it(self):
        bot = agent("agent_7", "cfo", max_amount=10_000)
        h = started(step("SINGLE"), initiated_by=bot)
        h.approve(1, bot)
        assert "started this instance" in h.last_rejection

    def test_an_agent_counts_once_and_only_within_its_limit(self):
        h = started(step())
        h.approve(1, agent("agent_small", max_amount=100))  # above its limit: a recommendation, not a vote
        assert "above agent_small's approval limit" in h.last_events[-1].reason
        assert [type(e).__name__ for e in h.last_events] == ["AgentRecommendation", "CommandRejected"]
        assert h.state.steps[0].votes == ()
        h.approve(1, agent("agent_big", max_amount=10_000))
        h.approve(1, agent("agent_big", max_amount=10_000))
        assert "already decided" in h.last_rejection
        h.approve(1, CAROL)
        assert h.step_status(1) is TaskStatus.APPROVED

    def test_an_agent_without_a_permission_is_not_an_approver(self):
        h = started(step("SINGLE"))
        h.approve(1, agent("agent_x", limits=False))
        assert "not among the approvers" in h.last_rejection


# ------------------------------------------------------------------------------------------ property

PEOPLE = [ALICE, CAROL, DAVE, BOB, BEA, BOTH, ADMIN, human("mallory", "clerk"),
          agent("agent_ok", max_amount=10_000), agent("agent_low", max_amount=10)]
MOVES = st.lists(st.tuples(st.sampled_from(["approve", "reject", "escalate", "escalate_fm", "escalate_x",
                                            "timeout"]),
                           st.sampled_from(range(len(PEOPLE)))), max_size=14)


@settings(max_examples=300, deadline=None)
@given(level=st.sampled_from(["SINGLE", "DUAL"]), moves=MOVES, manual_target=st.booleans())
def test_no_sequence_approves_with_fewer_eligible_distinct_approvers_than_the_level_needs(level, moves,
                                                                                       manual_target):
    config = {"timeout_hours": 1, "on_timeout": {"action": "escalate", "approvers": FM, "max_escalations": 2,
                                                 "then": "fail"}}
    if manual_target:
        config = {"escalate_to": FM}
    h = started(step(level, **config), initiated_by=DAVE)
    for move, who in moves:
        if h.state is None or h.step(1).status is not TaskStatus.IN_PROGRESS:
            break
        actor = PEOPLE[who]
        if move in ("approve", "reject"):
            h.decide_step(1, actor, move)
        elif move == "timeout":
            h.fire_due_timers(HOUR)
        else:
            escalate(h, actor, {"escalate": None, "escalate_fm": FM, "escalate_x": CFO}[move])
    approved = h.events_of(ev.StepApproved)
    if not approved:
        return
    # the approvals that made the quorum: all after the last escalation, distinct, eligible then, not DAVE's
    seqs = [e.seq for e in h.events if isinstance(e, ev.ApprovalEscalated)]
    boundary = max(seqs, default=0)
    approvers_now = FM if seqs else CFO
    counted = [e for e in h.events if isinstance(e, ev.DecisionRecorded) and e.seq > boundary
               and e.decision == "approve"]
    by = approved[0].approved_by
    assert len(set(by)) == len(by) >= (2 if level == "DUAL" else 1)
    assert set(by) == {e.actor.id for e in counted}
    assert "dave" not in by and "agent_low" not in by
    for e in counted:
        role = approvers_now["value"]
        assert role in e.actor.roles or e.actor.id == "agent_ok", (e.actor, approvers_now)


class TestSeparationOfDutiesSetting:
    """Issue 9.8: the rule is a documented per-template setting, on unless a template turns it off."""

    def test_it_is_on_by_default_for_humans_and_agents(self):
        bot = agent("agent_7", "cfo", max_amount=10_000)
        for initiator in (ALICE, bot):
            h = started(step("SINGLE"), initiated_by=initiator)
            h.approve(1, initiator)
            assert "started this instance and cannot approve it" in h.last_rejection

    def test_a_template_may_turn_it_off(self):
        bot = agent("agent_7", "cfo", max_amount=10_000)
        doc = workflow(step("SINGLE"), PAY)
        doc["settings"] = {"separation_of_duties": False}
        h = Harness(doc)
        h.start({"amount": 5}, initiated_by=bot)
        h.approve(1, bot)
        assert h.step_status(1) is TaskStatus.APPROVED

    def test_turning_it_off_does_not_let_anyone_vote_twice_or_outside_the_approvers(self):
        doc = workflow(step("DUAL"), PAY)
        doc["settings"] = {"separation_of_duties": False}
        h = Harness(doc)
        h.start({"amount": 5}, initiated_by=ALICE)
        h.approve(1, ALICE)
        h.approve(1, ALICE)
        assert "already decided" in h.last_rejection
        h.approve(1, BOB)
        assert "not among the approvers" in h.last_rejection

    def test_validation_knows_the_setting(self):
        from core.validation import validate_template

        doc = workflow(step("SINGLE"))
        assert validate_template({**doc, "settings": {"separation_of_duties": False}}) == []
        assert validate_template({**doc, "settings": {"separation_of_duties": "no"}})[0].pointer == \
            "/settings/separation_of_duties"
        assert validate_template({**doc, "settings": {"self_approval": True}})[0].pointer == "/settings/self_approval"


class TestAChangeOfTemplate:
    def test_votes_after_a_new_version_are_judged_by_the_instances_own_version(self):
        from core.decide import decide
        from tests.unit.harness import compiled

        h = started(step("DUAL"))
        h.approve(1, ALICE)
        loosened = compiled(workflow(step("SINGLE", approvers=FM), PAY), version=2)  # a later, laxer version
        from core.commands import RecordDecision

        decision = decide(h.state, RecordDecision(command_id="c_v2", instance_id=h.instance_id, step=1,
                                                  decision="approve", actor=BOB), loosened, h.now)
        assert decision.rejected and "Expected template tpl_test v1" in decision.events[0].reason
        h.approve(1, BOB)
        assert "not among the approvers" in h.last_rejection
        h.approve(1, CAROL)
        assert h.step_status(1) is TaskStatus.APPROVED


MEMBERS = [human(f"m{i}") for i in range(1, 5)]
BOARD = [human(f"b{i}") for i in range(1, 5)]
COMMITTEE_PEOPLE = [*MEMBERS, *BOARD, ADMIN]


@settings(max_examples=300, deadline=None)
@given(quorum=st.integers(1, 3), moves=st.lists(st.tuples(
    st.sampled_from(["approve", "reject", "escalate", "timeout"]), st.sampled_from(range(len(COMMITTEE_PEOPLE)))),
    max_size=16))
def test_no_committee_sequence_approves_without_a_quorum_of_the_members_in_charge(quorum, moves):
    members = {"type": "user", "value": [m.id for m in MEMBERS[:3]]}
    board = {"type": "user", "value": [b.id for b in BOARD[:3]]}
    h = started({"type": "approval", "name": "Committee", "config": {
        "approvers": members, "level": "COMMITTEE", "quorum": quorum, "timeout_hours": 1,
        "on_timeout": {"action": "escalate", "approvers": board, "max_escalations": 2, "then": "fail"}}})
    for move, who in moves:
        if h.state is None or h.step(1).status is not TaskStatus.IN_PROGRESS:
            break
        actor = COMMITTEE_PEOPLE[who]
        if move in ("approve", "reject"):
            h.decide_step(1, actor, move)
        elif move == "timeout":
            h.fire_due_timers(HOUR)
        else:
            escalate(h, actor)
    approved = h.events_of(ev.StepApproved)
    if not approved:
        return
    boundary = max((e.seq for e in h.events if isinstance(e, ev.ApprovalEscalated)), default=0)
    in_charge = board if boundary else members
    by = approved[0].approved_by
    assert len(set(by)) == len(by) >= quorum
    assert set(by) <= set(in_charge["value"])
    assert all(e.seq > boundary for e in h.events if isinstance(e, ev.DecisionRecorded) and e.actor.id in by)
