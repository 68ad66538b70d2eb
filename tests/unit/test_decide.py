"""The instance lifecycle in `decide`: start, pause/resume, cancel, manual retry, advance, the end, rejections."""

from __future__ import annotations

from core import commands as cmd
from core import events as ev
from core.decide import blocking, decide
from core.state import replay
from core.types import Awaiting, TaskStatus, WorkflowStatus
from tests.unit.harness import HOUR, T0, Harness, compiled, human, workflow

APPROVAL = {"type": "approval", "name": "Sign-off",
            "config": {"approvers": {"type": "role", "value": "ops"}, "timeout_hours": 1}}
ACTION = {"type": "action", "name": "Pay", "config": {"action": "execute_transfer", "retry_config": {"max_retries": 0}}}
OPS = human("olga", "ops")


def run(*steps, trigger=None) -> Harness:
    h = Harness(workflow(*(steps or (APPROVAL, ACTION))))
    h.start(trigger or {"amount": 10})
    return h


class TestStart:
    def test_start_records_the_instance_and_starts_the_first_step(self):
        h = run()
        started = h.events[0]
        assert isinstance(started, ev.InstanceStarted)
        assert (started.seq, started.step_count, started.template_name) == (1, 2, "Test Workflow")
        assert h.status is WorkflowStatus.ACTIVE
        assert h.current_step == 1
        assert h.step(1).awaiting is Awaiting.APPROVAL
        assert h.state.created_at == T0

    def test_a_second_start_of_the_same_instance_is_rejected(self):
        h = run()
        h.start({"amount": 10})
        assert h.last_rejection == "Command start:wfi_test was already applied"
        h.send(cmd.StartInstance(command_id="other", instance_id="wfi_test", template_id="tpl_test",
                                 template_version=1, tenant_id="t", trigger={}))
        assert h.last_rejection == "Instance wfi_test already exists (started from tpl_test)"

    def test_start_with_another_template_version_is_rejected_and_creates_nothing(self):
        template = compiled(workflow(APPROVAL))
        decision = decide(None, cmd.StartInstance(command_id="s", instance_id="i", template_id="tpl_test",
                                                  template_version=2, tenant_id="t", trigger={}), template, T0)
        assert decision.state is None
        assert decision.rejected
        assert "Expected template tpl_test v2, but was given tpl_test v1" in decision.events[0].reason

    def test_a_command_for_an_unknown_instance_is_rejected(self):
        template = compiled(workflow(APPROVAL))
        decision = decide(None, cmd.Advance(command_id="a", instance_id="nope"), template, T0)
        assert decision.state is None
        [rejection] = decision.events
        assert rejection.reason == "Expected an existing instance nope, but there is none"

    def test_a_command_for_another_instance_is_rejected(self):
        h = run()
        h.send(cmd.RecordDecision(command_id="x", instance_id="wfi_other", step=1, decision="approve", actor=OPS))
        assert h.last_rejection == "Expected a command for instance wfi_test, but got one for wfi_other"

    def test_a_command_decided_with_another_template_is_rejected(self):
        h = run()
        other = compiled(workflow(APPROVAL), version=7)
        decision = decide(h.state, cmd.Advance(command_id="a", instance_id="wfi_test"), other, T0)
        assert decision.rejected
        assert decision.events[0].reason == "Expected template tpl_test v1, but was given tpl_test v7"


class TestRejections:
    def test_duplicate_command_is_rejected_and_changes_nothing(self):
        h = run()
        decision = h.approve(1, OPS)
        state = h.state
        h.send(h.commands[-1])
        assert h.last_rejection == f"Command {h.commands[-1].command_id} was already applied"
        assert h.state.steps == state.steps
        assert h.state.seq == state.seq + 1
        assert decision.events

    def test_result_for_the_wrong_step_says_what_was_expected(self):
        h = run()
        h.succeed(2, {}, attempt=1)
        assert h.last_rejection == "Expected a result for step 1, but got one for step 2"

    def test_result_for_an_approval_step_is_rejected(self):
        h = run()
        h.succeed(1, {}, attempt=1)
        assert h.last_rejection.startswith("Expected a result for step 1 attempt 1 (IN_PROGRESS, awaiting approval)")

    def test_decision_for_a_step_that_is_not_an_approval_is_rejected(self):
        h = run()
        h.approve(1, OPS)
        h.approve(2, OPS)
        assert h.last_rejection == "Expected step 2 to await a decision, but it awaits payment"

    def test_a_timer_no_longer_armed_is_rejected(self):
        h = run()
        [timer] = h.timers()
        h.approve(1, OPS)
        h.fire(timer)
        assert h.last_rejection == f"Timer {timer.timer_id} is no longer armed"

    def test_rejections_carry_the_next_seq_and_the_command_id(self):
        h = run()
        seq = h.state.seq
        h.succeed(2, {})
        [rejection] = h.last_events
        assert (rejection.seq, rejection.command_id, rejection.command_type) == (seq + 1, "c1", "ReportStepResult")


class TestPauseResume:
    def test_decisions_wait_while_paused(self):
        h = run()
        h.pause("audit")
        assert h.status is WorkflowStatus.PAUSED
        h.approve(1, OPS)
        assert h.last_rejection == "Instance is PAUSED; decisions wait until it is resumed"

    def test_timers_are_deferred_while_paused_and_fire_after_resume(self):
        h = run()
        h.pause()
        assert h.state.armed_timers() == ()
        assert h.fire_due_timers(2 * HOUR) == []
        [timer] = h.timers()
        h.fire(timer)
        assert h.last_rejection == f"Instance is PAUSED; timer {timer.timer_id} fires after resume"
        h.resume()
        assert h.state.armed_timers() == (timer,)
        h.fire(timer)  # the sweep sends the same FireTimer again
        assert h.step_status(1) is TaskStatus.TIMED_OUT

    def test_a_command_refused_while_paused_is_judged_afresh_when_sent_again_after_resume(self):
        h = run()
        h.pause()
        refused = h.approve(1, OPS)
        assert refused.rejected
        h.resume()
        h.send(h.commands[-2])
        assert h.step_status(1) is TaskStatus.APPROVED

    def test_a_handler_result_while_paused_is_recorded_and_the_next_step_starts_on_resume(self):
        h = run(ACTION, APPROVAL)
        h.pause()
        h.succeed(1, {"ok": True})
        assert h.step_status(1) is TaskStatus.COMPLETED
        assert h.step_status(2) is TaskStatus.PENDING
        h.resume()
        assert h.step(2).awaiting is Awaiting.APPROVAL

    def test_pause_twice_and_resume_when_active_are_rejected(self):
        h = run()
        h.resume()
        assert h.last_rejection == "Expected a PAUSED instance to resume, but it is ACTIVE"
        h.pause()
        h.pause()
        assert h.last_rejection == "Expected an ACTIVE instance to pause, but it is PAUSED"


class TestCancel:
    def test_cancel_ends_the_instance_and_drops_its_timers(self):
        h = run()
        h.cancel("duplicate order")
        assert h.status is WorkflowStatus.CANCELLED
        assert h.state.failure == "duplicate order"
        assert h.timers() == []

    def test_a_paused_instance_can_be_cancelled(self):
        h = run()
        h.pause()
        h.cancel()
        assert h.status is WorkflowStatus.CANCELLED


class TestTerminal:
    def test_terminal_states_absorb_every_command(self):
        h = run()
        h.cancel()
        state = h.state
        for send in (lambda: h.approve(1, OPS), lambda: h.succeed(2, {}), lambda: h.pause(), lambda: h.resume(),
                     lambda: h.cancel(), lambda: h.proceed(), lambda: h.callback(1), lambda: h.retry(1),
                     lambda: h.fire("wfi_test:1:1:approval_timeout")):
            send()
            assert h.last.rejected
            assert h.last_rejection in ("Instance is CANCELLED; it accepts no more commands",
                                        "Expected a FAILED instance to retry, but it is CANCELLED")
        assert (h.state.status, h.state.steps, h.state.timers) == (state.status, state.steps, state.timers)

    def test_completed_instance_moves_past_the_last_step(self):
        h = run()
        h.approve(1, OPS)
        h.succeed(2, {"ok": 1})
        assert h.status is WorkflowStatus.COMPLETED
        assert h.current_step == 3
        assert blocking(h.state, h.template) == {"status": "COMPLETED", "waiting_for": None}


class TestRetryStep:
    def test_a_failed_step_can_be_retried_with_a_new_attempt(self):
        h = run()
        h.approve(1, OPS)
        h.fail(2, "insufficient funds", retryable=False)
        assert h.status is WorkflowStatus.FAILED
        h.retry(2)
        assert isinstance(h.last_events[0], ev.StepRetried)
        assert h.status is WorkflowStatus.ACTIVE
        assert h.state.failure == ""
        assert h.step(2).attempt == 2
        assert h.orders_for(2)[-1].idempotency_key == "wfi_test:2:v2"  # a new visit: what failed paid nothing
        h.succeed(2, {"ok": 1})
        assert h.status is WorkflowStatus.COMPLETED

    def test_a_timed_out_approval_can_be_retried(self):
        h = run()
        h.fire_due_timers(HOUR)
        h.retry(1)
        assert h.step(1).awaiting is Awaiting.APPROVAL
        assert h.timers()[0].fire_at == h.now + HOUR

    def test_retry_of_another_step_is_rejected(self):
        h = run()
        h.fire_due_timers(HOUR)
        h.retry(2)
        assert h.last_rejection == "Expected a retry of failed step 1, but got step 2"

    def test_retry_of_an_active_instance_is_rejected(self):
        h = run()
        h.retry(1)
        assert h.last_rejection == "Expected a FAILED instance to retry, but it is ACTIVE"

    def test_retry_is_judged_against_the_template_and_tenant_even_when_failed(self):
        h = run()
        h.fire_due_timers(HOUR)
        other = compiled(workflow(APPROVAL, ACTION), version=2)
        decision = decide(h.state, cmd.RetryStep(command_id="r", instance_id="wfi_test", step=1), other, h.now)
        assert decision.rejected
        assert decision.events[0].reason == "Expected template tpl_test v1, but was given tpl_test v2"
        h.send(cmd.RetryStep(command_id="r2", instance_id="wfi_test", step=1,
                             actor=human("eve", tenant_id="t_other")))
        assert h.last_rejection == "eve belongs to another tenant"

    def test_a_duplicate_retry_is_rejected(self):
        h = run()
        h.fire_due_timers(HOUR)
        h.retry(1)
        h.send(h.commands[-1])
        assert h.last_rejection.endswith("was already applied")


class TestAdvance:
    def test_proceed_if_ready_reports_who_is_blocking(self):
        h = run()
        h.proceed(OPS)
        [checked] = h.last_events
        assert isinstance(checked, ev.AdvanceChecked)
        assert checked.blocking == "step 1 (Sign-off) waits for approval: 1 more approval(s) from role ops"
        info = blocking(h.state, h.template)
        assert info["next_timer"] == {"purpose": "approval_timeout", "fire_at": T0 + HOUR}
        assert info["remaining"] == 1

    def test_proceed_if_ready_on_a_paused_instance_says_so(self):
        h = run()
        h.pause()
        h.proceed()
        assert h.last_events[0].blocking == "instance is PAUSED"


def test_every_decision_replays_to_the_same_state():
    h = run()
    h.approve(1, OPS)
    h.fail(2, "x", retryable=False)
    h.retry(2)
    h.succeed(2, {})
    assert replay(h.events) == h.state
    assert [e.seq for e in h.events] == list(range(1, len(h.events) + 1))


class TestExpiry:
    """The engine may forget a finished instance after its retention (ExpireInstance from its sweep)."""

    def expire(self, h, ended_at=None):
        from core.commands import ExpireInstance

        return h.send(ExpireInstance(command_id=h.next_command_id(), instance_id=h.instance_id,
                                     ended_at=h.state.updated_at if ended_at is None else ended_at))

    def test_a_finished_instance_may_be_forgotten(self):
        from tests.unit.harness import Harness, workflow

        h = Harness(workflow({"type": "condition", "name": "Done", "config": {"expression": "true",
                                                                             "if_true": "complete"}}))
        h.start({})
        decision = self.expire(h)
        assert decision.forget and decision.events == []

    def test_a_running_instance_is_never_forgotten(self):
        from tests.unit.harness import Harness, workflow

        h = Harness(workflow({"type": "approval", "name": "Sign", "config": {"approvers": {"type": "role",
                                                                                          "value": "cfo"}}}))
        h.start({})
        decision = self.expire(h)
        assert not decision.forget
        assert "Expected a finished instance to expire" in h.last_rejection

    def test_an_instance_that_changed_since_the_sweep_looked_is_kept(self):
        from tests.unit.harness import Harness, workflow

        h = Harness(workflow({"type": "condition", "name": "Done", "config": {"expression": "true",
                                                                             "if_true": "complete"}}))
        h.start({})
        decision = self.expire(h, ended_at=1)
        assert not decision.forget and "changed" in h.last_rejection
