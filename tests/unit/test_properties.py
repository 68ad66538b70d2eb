"""Property tests: random command sequences against the built-in templates keep the engine's invariants.

Each example starts one instance of a built-in template and sends it a random mix of plausible and
implausible inputs (decisions from a pool of actors, handler results for right and wrong attempts,
callbacks, timer firings of armed and long-gone timers, sweeps after random time advances, pause, resume,
cancel, manual retries, and redeliveries of earlier commands). After every command the invariants hold.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from core import commands as cmd
from core import events as ev
from core.actors import SYSTEM
from core.approvers import refusal
from core.builtin import BUILTIN_NAMES, STATE_MACHINE_NAMES
from core.effects import StepRequest
from core.state import InstanceState, apply, replay
from core.types import TERMINAL_STATUSES, Awaiting, TaskStatus, WorkflowStatus
from tests.unit.harness import HOUR, T0, Harness, agent, compiled_builtin, human

TEMPLATES = {name: compiled_builtin(name) for name in BUILTIN_NAMES + STATE_MACHINE_NAMES}

TRIGGERS: dict[str, list[Any]] = {
    "procurement_approval": [{"id": "tr_1", "amount": a} for a in (500, 1000, 1000.5, 5000)] + [{"id": "tr_1"}],
    "trade_approval": [{"id": "tr_2", "amount": 60_000}],
    "compliance_review": [{"id": "tr_3", "amount": 120, "metadata": {"compliance": "required"}}],
    "model_deployment": [
        {"validation_url": "https://v.test/run", "model": "pricing", "version": "3", "owner_email": "o@x.test",
         "deploy_at": deploy_at} for deploy_at in (T0 + 2 * HOUR, "2026-01-02T00:00:00Z", "2020-01-01", "never")
    ],
    "account_onboarding": [{"metadata": {"customer_id": "c_1", "email": "new@x.test"}}],
    "compliance_review_sm": [{"id": "tr_3", "amount": 120}],
    "model_deployment_sm": [{"validation_url": "https://v.test/run", "model": "pricing", "version": "3",
                             "owner_email": "o@x.test"}],
}
STATES = ["submitted", "under_review", "changes_requested", "approved", "rejected", "validating", "staging",
          "canary", "production", "rolled_back", "nowhere"]

ACTORS = [
    human("u_cfo", "cfo"), human("u_fm", "finance_manager"), human("u_fm2", "finance_manager"),
    human("r_1", "risk_officer"), human("r_2", "risk_officer"), human("h_1", "head_of_risk"),
    human("co_alice"), human("co_bob"), human("co_carol"), human("u_mr", "model_risk"),
    human("o_1", "onboarding_officer"), human("adm", "workflow_admin", "compliance_officer"),
    human("eve", "cfo", tenant_id="t_other"), human("nobody"), SYSTEM,
    agent("agent_mrm", limits=False), agent("agent_456", max_amount=1000, step_names=("Manager Approval",)),
    agent("agent_big", max_amount=1_000_000),
]

RESPONSES = [
    {"status": 200, "body": {"passed": True, "metrics": {"auc": 0.91}, "kyc_level": 3, "risk_score": 0.2}},
    {"status": 200, "body": {"passed": False, "kyc_level": 1, "risk_score": 0.8}},
    {"status": 202}, {"status": 503}, {"status": 404}, {"status": "weird"}, {"transfer_status": "completed"},
    None, "not json object", [1, 2],
]
CALLBACK_RESULTS = [{"risk_score": 0.1}, {"risk_score": 0.93}, {"error": "sanctions"}, None, "text"]
ADVANCES = [0, 1, 1000, 60_000, HOUR, 5 * HOUR, 25 * HOUR, 80 * HOUR, 8 * 24 * HOUR]  # a week: timed transitions

KINDS = ["helpful"] * 10 + ["decision", "decision", "result", "result", "payment", "payment", "callback", "sweep",
                           "sweep", "fire", "clock", "advance", "pause", "resume", "resume", "cancel", "retry",
                           "duplicate", "duplicate", "foreign", "escalate", "transition", "transition"]
GOOD_OUTPUT = {"status": 200, "body": {"passed": True, "metrics": {"auc": 0.91}, "kyc_level": 3, "risk_score": 0.2}}


def business(state: InstanceState | None) -> InstanceState | None:
    """The state without its bookkeeping (seq, updated_at, the ids of recent commands)."""
    return None if state is None else replace(state, seq=0, updated_at=0, recent_commands=())


class CheckedHarness(Harness):
    """A harness that checks every invariant after every command it sends."""

    def __init__(self, template) -> None:
        super().__init__(template)
        self.replayed: InstanceState | None = None
        self.request_ids: set[str] = set()
        self.applied: set[int] = set()
        self.seen_timers: list[str] = []

    def send(self, command: cmd.Command, *, duplicate_of_applied: bool = False):
        before = self.state
        events_before = sum(1 for e in self.events if e.seq)
        decision = super().send(command)
        state = self.state
        n = self.template.step_count
        # seqs are 1..n with no gap, and folding the events rebuilds exactly the state decide returned; a
        # refusal outside the sequence (seq 0: another tenant's actor) changes nothing, not even seq
        in_sequence = [e for e in decision.events if e.seq]
        for offset, emitted in enumerate(in_sequence, start=1):
            assert emitted.seq == events_before + offset, emitted
            self.replayed = apply(self.replayed, emitted)
        if len(in_sequence) < len(decision.events):
            assert decision.rejected and not in_sequence and state is before
        assert self.replayed == state
        if decision.rejected:
            assert len(decision.events) == 1 and decision.effects == []
            assert business(state) == business(before)
        else:
            self.applied.add(id(command))
        if duplicate_of_applied:
            assert decision.rejected
            assert decision.events[0].reason == f"Command {command.command_id} was already applied"
        retried = isinstance(command, cmd.RetryStep) and before is not None and before.status is WorkflowStatus.FAILED
        if before is not None and before.status in TERMINAL_STATUSES and not retried:
            assert business(state) == business(before)
        assert state is not None
        # a state-machine instance resting in a state (or between states) runs no step: current_step 0
        assert (0 if self.template.machine is not None else 1) <= state.current_step <= n + 1
        if state.status is WorkflowStatus.COMPLETED:
            assert state.current_step == n + 1
        assert all(1 <= t.step <= n or (t.step == 0 and t.purpose == "transition_due") for t in state.timers)
        if state.status in TERMINAL_STATUSES:
            assert state.timers == ()
        requests = [(e.idempotency_key, e.attempt) for e in decision.events if isinstance(e, ev.StepRequested)]
        for (key, attempt), effect in zip(requests, decision.effects, strict=True):
            # a handler request's id is its attempt's; a payment order's key is its visit's, the same for every
            # attempt of the visit (docs/adr/0023): one key, one payment, however often it is asked
            unique = key if isinstance(effect, StepRequest) else (key, attempt)
            assert unique not in self.request_ids, unique
            self.request_ids.add(unique)
        assert [key for key, _ in requests] == [
            e.request_id if isinstance(e, StepRequest) else e.idempotency_key for e in decision.effects]
        self.seen_timers.extend(t.timer_id for t in state.timers if t.timer_id not in self.seen_timers)
        return decision


def step_number(data, h: Harness) -> int:
    n = h.template.step_count
    return data.draw(st.one_of(st.just(h.current_step), st.integers(0, n + 1)), label="step")


def helpful(data, h: CheckedHarness) -> None:
    """What the outside world would most likely send next, so that examples get past the first steps."""
    state = h.state
    if state.status is WorkflowStatus.PAUSED:
        h.resume()
        return
    current = state.current
    machine = h.template.machine
    resting = current is None or current.status is not TaskStatus.IN_PROGRESS
    if machine is not None and state.status is WorkflowStatus.ACTIVE and resting and not state.route:
        targets = [t.target for t in machine.machine.outgoing(state.machine_state) if not t.automatic]
        if targets:
            h.send(cmd.RequestTransition(command_id=h.next_command_id(), instance_id=h.instance_id,
                                         target=data.draw(st.sampled_from(targets), label="next state"),
                                         actor=data.draw(st.sampled_from(ACTORS[9:12]), label="requester"),
                                         reason="helpful"))
        return
    if current is None or state.is_terminal:
        if state.status is WorkflowStatus.FAILED:
            h.retry(state.current_step)
        return
    step = h.template.step(state.current_step)
    awaiting = current.awaiting
    if awaiting in (Awaiting.APPROVAL, Awaiting.REVIEW):
        trigger = state.trigger if isinstance(state.trigger, dict) else {}
        eligible = [a for a in ACTORS if a.tenant_id in ("", state.tenant_id)
                    and all(v.actor_id != a.id for v in current.votes)
                    and refusal(a, current.approvers, step_name=step.spec.name, amount=trigger.get("amount"),
                                initiator=state.initiated_by) is None]
        if eligible:
            actor = data.draw(st.sampled_from(eligible), label="eligible actor")
            h.decide_step(state.current_step, actor, data.draw(st.sampled_from(["approve"] * 4 + ["reject"])))
    elif awaiting is Awaiting.HANDLER:
        outcome = "accepted" if step.spec.config.get("mode") == "async" else "succeeded"
        output = data.draw(st.sampled_from([GOOD_OUTPUT, GOOD_OUTPUT, *RESPONSES]), label="good output")
        h.result(state.current_step, outcome, output)
    elif awaiting is Awaiting.CALLBACK:
        h.callback(state.current_step, "completed", data.draw(st.sampled_from(CALLBACK_RESULTS[:2])))
    else:
        h.fire_due_timers(data.draw(st.sampled_from([HOUR, 25 * HOUR, 100 * HOUR, 8 * 24 * HOUR]), label="wait out"))


def one_command(data, h: CheckedHarness) -> None:
    kind = data.draw(st.sampled_from(KINDS), label="kind")
    iid = h.instance_id
    if kind == "helpful":
        helpful(data, h)
    elif kind == "transition":
        h.send(cmd.RequestTransition(command_id=h.next_command_id(), instance_id=iid,
                                     target=data.draw(st.sampled_from(STATES), label="target"),
                                     actor=data.draw(st.sampled_from(ACTORS), label="by"), reason="because"))
    elif kind == "decision":
        h.decide_step(step_number(data, h), data.draw(st.sampled_from(ACTORS), label="actor"),
                      data.draw(st.sampled_from(["approve", "approve", "reject", "abstain"]), label="decision"))
    elif kind == "result":
        step = step_number(data, h)
        current = h.state.step_state(step)
        attempt = data.draw(st.sampled_from([current.attempt if current else 1, 0, 1, 2, 5]), label="attempt")
        outcome = data.draw(st.sampled_from(["succeeded", "succeeded", "failed", "accepted", "lost"]), label="outcome")
        output = data.draw(st.sampled_from(RESPONSES), label="output")
        h.result(step, outcome, output, error="handler said no", retryable=data.draw(st.booleans()), attempt=attempt)
    elif kind == "payment":  # the payment service's answer as the relay reports it: any key, any status
        step = step_number(data, h)
        keys = [o.idempotency_key for o in h.orders] + [f"{iid}:{step}:v1", f"{iid}:{step}:v2", "lookup:x:1:1"]
        h.paid(step, data.draw(st.sampled_from(["succeeded", "succeeded", "failed", "pending"]), label="status"),
               data.draw(st.sampled_from(RESPONSES), label="output"), error="refused",
               key=data.draw(st.sampled_from(keys), label="key"))
    elif kind == "callback":
        h.callback(step_number(data, h), data.draw(st.sampled_from(["completed", "completed", "failed", "ok"])),
                   data.draw(st.sampled_from(CALLBACK_RESULTS)))
    elif kind == "sweep":
        h.fire_due_timers(data.draw(st.sampled_from(ADVANCES), label="advance"))
    elif kind == "fire":
        known = [t.timer_id for t in h.state.timers] + h.seen_timers + [f"{iid}:1:1:nonsense"]
        h.fire(data.draw(st.sampled_from(known), label="timer"))
    elif kind == "clock":
        h.advance(data.draw(st.sampled_from(ADVANCES), label="advance"))
    elif kind == "advance":
        h.proceed(data.draw(st.sampled_from(ACTORS)))
    elif kind == "pause":
        h.pause("hold")
    elif kind == "resume":
        h.resume()
    elif kind == "cancel":
        if data.draw(st.integers(0, 3), label="really cancel") == 0:
            h.cancel("stop")
    elif kind == "retry":
        h.retry(step_number(data, h))
    elif kind == "duplicate":
        earlier = data.draw(st.sampled_from(h.commands), label="earlier")
        h.send(earlier, duplicate_of_applied=id(earlier) in h.applied)
    elif kind == "escalate":
        approvers = data.draw(st.sampled_from([{"type": "role", "value": "cfo"}, {"type": "user", "value": ["co_bob"]},
                                               [], {"type": "role", "value": "nobody_has_this"}]), label="to")
        h.send(cmd.EscalateApproval(command_id=h.next_command_id(), instance_id=iid, step=step_number(data, h),
                                    approvers=approvers, actor=data.draw(st.sampled_from(ACTORS), label="by"),
                                    timeout_hours=data.draw(st.sampled_from([0.0, 1.0]), label="hours")))
    elif kind == "foreign":
        template = h.template.template
        h.send(cmd.StartInstance(command_id=f"start:{iid}", instance_id=iid, template_id=template.template_id,
                                 template_version=template.version, tenant_id="t", trigger={}),
               duplicate_of_applied=True)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_random_command_sequences_keep_every_invariant(data):
    name = data.draw(st.sampled_from(BUILTIN_NAMES + STATE_MACHINE_NAMES), label="template")
    h = CheckedHarness(TEMPLATES[name])
    trigger = data.draw(st.sampled_from(TRIGGERS[name]), label="trigger")
    initiator = data.draw(st.sampled_from([SYSTEM, SYSTEM, ACTORS[0], ACTORS[1], ACTORS[3]]), label="initiator")
    h.start(trigger, initiated_by=initiator)
    for _ in range(data.draw(st.integers(1, 40), label="length")):
        one_command(data, h)
    assert replay(h.events) == h.state
    event(f"{name} ended {h.state.status.value} at step {h.state.current_step}")
