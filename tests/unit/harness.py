"""A fake world for one instance: the compiled template, the state, a clock and the full log.

`send(command)` calls `decide` at the harness clock and keeps every command, event and step request.
Helpers build the commands the engine would receive (decisions, handler results, callbacks, timer
firings from the sweep). When a test fails, tests/unit/conftest.py prints `log_text()` of every harness
the test created, so the failure shows what the instance did.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields, is_dataclass
from enum import Enum
from typing import Any

from core import commands as cmd
from core import events as ev
from core.actors import SYSTEM, Actor, ApprovalLimits
from core.builtin import builtin_template
from core.decide import Decision, decide
from core.effects import PaymentOrder, StepRequest
from core.payments import operation_key_parts
from core.state import InstanceState, Timer
from core.template import CompiledTemplate, compile_template, parse_template
from core.types import ActorKind, Awaiting, TaskStatus, WorkflowStatus

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
HOUR = 3_600_000
TENANT = "t_acme"

LIVE_HARNESSES: list[Harness] = []


def human(actor_id: str, *roles: str, tenant_id: str = TENANT) -> Actor:
    return Actor(id=actor_id, kind=ActorKind.HUMAN, roles=roles, tenant_id=tenant_id)


def agent(actor_id: str, *roles: str, max_amount: float | None = None, step_names: tuple[str, ...] = (),
          limits: bool = True, **bounds: Any) -> Actor:
    approval_limits = ApprovalLimits(max_amount=max_amount, step_names=step_names, **bounds) if limits else None
    return Actor(id=actor_id, kind=ActorKind.AGENT, roles=roles, tenant_id=TENANT, approval_limits=approval_limits)


def compiled(doc: Mapping[str, Any], *, template_id: str = "tpl_test", version: int = 1) -> CompiledTemplate:
    return compile_template(parse_template(doc, template_id=template_id, version=version, tenant_id=TENANT))


def compiled_builtin(name: str) -> CompiledTemplate:
    return compiled(builtin_template(name), template_id=name)


def workflow(*steps: Mapping[str, Any], name: str = "Test Workflow") -> dict[str, Any]:
    return {"name": name, "trigger_type": "manual", "steps": list(steps)}


@dataclass
class Entry:
    kind: str  # "command" | "event" | "request"
    at: int
    item: Any


class Harness:
    def __init__(self, template: CompiledTemplate | Mapping[str, Any] | str, *, instance_id: str = "wfi_test",
                 now: int = T0) -> None:
        if isinstance(template, str):
            template = compiled_builtin(template)
        elif not isinstance(template, CompiledTemplate):
            template = compiled(template)
        self.template = template
        self.instance_id = instance_id
        self.now = now
        self.state: InstanceState | None = None
        self.log: list[Entry] = []
        self.events: list[ev.Event] = []
        self.requests: list[StepRequest] = []
        self.orders: list[PaymentOrder] = []  # the engine's own payment orders (docs/adr/0023)
        self.commands: list[cmd.Command] = []
        self.last: Decision | None = None
        self._ids = 0
        LIVE_HARNESSES.append(self)

    # ------------------------------------------------------------------------------------------ sending

    def next_command_id(self) -> str:
        self._ids += 1
        return f"c{self._ids}"

    def send(self, command: cmd.Command) -> Decision:
        decision = decide(self.state, command, self.template, self.now)
        self.commands.append(command)
        self.log.append(Entry("command", self.now, command))
        for event in decision.events:
            self.log.append(Entry("event", self.now, event))
        for request in decision.effects:
            self.log.append(Entry("request", self.now, request))
        self.events.extend(decision.events)
        self.requests.extend(e for e in decision.effects if isinstance(e, StepRequest))
        self.orders.extend(e for e in decision.effects if isinstance(e, PaymentOrder))
        self.state = decision.state
        self.last = decision
        return decision

    def start(self, trigger: Any = None, *, initiated_by: Actor = SYSTEM, agent_context: Any = None,
              source: str = "manual") -> Decision:
        return self.send(cmd.StartInstance(
            command_id=f"start:{self.instance_id}", instance_id=self.instance_id,
            template_id=self.template.template.template_id, template_version=self.template.template.version,
            tenant_id=TENANT, trigger=trigger if trigger is not None else {}, initiated_by=initiated_by,
            agent_context=agent_context, source=source,
        ))

    def decide_step(self, step: int, actor: Actor, decision: str, reasoning: str = "") -> Decision:
        return self.send(cmd.RecordDecision(command_id=self.next_command_id(), instance_id=self.instance_id,
                                            step=step, decision=decision, actor=actor, reasoning=reasoning))

    def approve(self, step: int, actor: Actor, reasoning: str = "") -> Decision:
        return self.decide_step(step, actor, "approve", reasoning)

    def reject(self, step: int, actor: Actor, reasoning: str = "") -> Decision:
        return self.decide_step(step, actor, "reject", reasoning)

    def orders_for(self, step: int) -> list[PaymentOrder]:
        return [o for o in self.orders if (operation_key_parts(o.idempotency_key) or ("", 0))[1] == step]

    def paid(self, step: int, status: str = "succeeded", output: Any = None, *, error: str = "",
             key: str | None = None) -> Decision:
        """The payment service's answer to the step's last payment order, as the relay reports it."""
        if key is None:
            key = self.orders_for(step)[-1].idempotency_key
        return self.send(cmd.RecordPaymentResult(command_id=self.next_command_id(), instance_id=self.instance_id,
                                                 step=step, operation_key=key, status=status, output=output,
                                                 error=error))

    def result(self, step: int, outcome: str, output: Any = None, *, error: str = "", retryable: bool = True,
               attempt: int | None = None) -> Decision:
        """A handler's report. For a step awaiting the engine's payment order (docs/adr/0023) it is what the
        same outcome is on that path: a success or a final failure is the payment service's answer (`paid`),
        a retryable failure is the attempt's timeout firing (an order's attempt fails retryably only by
        going unanswered), anything else is sent as an answer with that status. So a test of what a step
        does after a success, a refusal or a failed attempt reads the same on both paths."""
        if attempt is None and self.state is not None and self.step(step).awaiting is Awaiting.PAYMENT:
            if outcome == "failed" and retryable:
                [timeout] = [t for t in self.timers("payment_timeout") if t.step == step]
                return self.fire(timeout)
            return self.paid(step, outcome, output, error=error)
        if attempt is None:
            attempt = self.step(step).attempt
        return self.send(cmd.ReportStepResult(command_id=self.next_command_id(), instance_id=self.instance_id,
                                              step=step, attempt=attempt, outcome=outcome, output=output,
                                              error=error, retryable=retryable))

    def succeed(self, step: int, output: Any = None, *, attempt: int | None = None) -> Decision:
        return self.result(step, "succeeded", output, attempt=attempt)

    def accept(self, step: int, output: Any = None) -> Decision:
        return self.result(step, "accepted", output if output is not None else {"status": 202})

    def fail(self, step: int, error: str = "boom", retryable: bool = True, *, output: Any = None) -> Decision:
        return self.result(step, "failed", output, error=error, retryable=retryable)

    def callback(self, step: int, status: str = "completed", result: Any = None) -> Decision:
        return self.send(cmd.CompleteExternal(command_id=self.next_command_id(), instance_id=self.instance_id,
                                              step=step, status=status, result=result))

    def proceed(self, actor: Actor = SYSTEM) -> Decision:
        return self.send(cmd.Advance(command_id=self.next_command_id(), instance_id=self.instance_id, actor=actor))

    def pause(self, reason: str = "") -> Decision:
        return self.send(cmd.PauseInstance(command_id=self.next_command_id(), instance_id=self.instance_id,
                                           reason=reason))

    def resume(self) -> Decision:
        return self.send(cmd.ResumeInstance(command_id=self.next_command_id(), instance_id=self.instance_id))

    def cancel(self, reason: str = "") -> Decision:
        return self.send(cmd.CancelInstance(command_id=self.next_command_id(), instance_id=self.instance_id,
                                            reason=reason))

    def retry(self, step: int) -> Decision:
        return self.send(cmd.RetryStep(command_id=self.next_command_id(), instance_id=self.instance_id, step=step))

    def fire(self, timer: Timer | str) -> Decision:
        timer_id = timer if isinstance(timer, str) else timer.timer_id
        fire_at = timer.fire_at if isinstance(timer, Timer) else self.now
        return self.send(cmd.FireTimer(command_id=f"fire:{timer_id}@{fire_at}", instance_id=self.instance_id,
                                       timer_id=timer_id))

    # ---------------------------------------------------------------------------------------- the clock

    def advance(self, ms: int) -> None:
        self.now += ms

    def fire_due_timers(self, advance_ms: int = 0) -> list[Decision]:
        """Move the clock, then fire every armed timer due by then, earliest first (like the engine's sweep)."""
        self.advance(advance_ms)
        decisions = []
        fired: set[tuple[str, int]] = set()
        while self.state is not None:
            due = sorted((t for t in self.state.armed_timers()
                          if t.fire_at <= self.now and (t.timer_id, t.fire_at) not in fired),
                         key=lambda t: (t.fire_at, t.timer_id))
            if not due:
                break
            fired.add((due[0].timer_id, due[0].fire_at))
            decisions.append(self.fire(due[0]))
        return decisions

    # -------------------------------------------------------------------------------------------- reading

    @property
    def status(self) -> WorkflowStatus:
        assert self.state is not None
        return self.state.status

    @property
    def current_step(self) -> int:
        assert self.state is not None
        return self.state.current_step

    def step(self, number: int):
        assert self.state is not None
        return self.state.steps[number - 1]

    def step_status(self, number: int) -> TaskStatus:
        return self.step(number).status

    def timers(self, purpose: str | None = None) -> list[Timer]:
        assert self.state is not None
        return [t for t in self.state.timers if purpose is None or t.purpose == purpose]

    def events_of(self, event_type: type[ev.Event]) -> list[Any]:
        return [e for e in self.events if isinstance(e, event_type)]

    def requests_for(self, step: int, kind: str | None = None) -> list[StepRequest]:
        return [r for r in self.requests if r.step == step and (kind is None or r.kind == kind)]

    @property
    def last_events(self) -> list[ev.Event]:
        assert self.last is not None
        return self.last.events

    @property
    def last_rejection(self) -> str:
        """The reason of the last decision's rejection; fails the test if it was not a rejection."""
        assert self.last is not None and self.last.rejected, f"expected a rejection, got {self.last_events}"
        rejection = self.last.events[-1]
        assert isinstance(rejection, ev.CommandRejected)
        return rejection.reason

    def log_text(self) -> str:
        lines = [f"instance {self.instance_id} of {self.template.template.template_id} "
                 f"v{self.template.template.version}"]
        for entry in self.log:
            arrow = {"command": ">>", "event": "  <-", "request": "  =>"}[entry.kind]
            lines.append(f"{arrow} t+{(entry.at - T0) / 1000:g}s {describe(entry.item)}")
        if self.state is not None:
            lines.append(f"state: {self.state.status.value} at step {self.state.current_step}; "
                         f"steps {[(s.step, s.status.value, s.awaiting.value) for s in self.state.steps]}; "
                         f"timers {[(t.purpose, t.step, t.fire_at - T0) for t in self.state.timers]}")
        return "\n".join(lines)


def describe(item: Any) -> str:
    """One compact line per command, event or request (the instance id is left out: it is always the same)."""
    skip = {"instance_id", "tenant_id", "template_id", "template_version", "context", "issued_at", "requested_at",
            "at"}
    parts = []
    for f in fields(item):
        if f.name in skip:
            continue
        value = getattr(item, f.name)
        if value in (None, "", (), 0, False) and f.name not in ("step", "attempt"):
            continue
        if isinstance(value, Actor):
            value = f"{value.kind.value}:{value.id}"
        parts.append(f"{f.name}={_short(value)}")
    return f"{type(item).__name__}({', '.join(parts)})"


def _short(value: Any) -> str:
    if isinstance(value, Enum):
        return value.value
    if is_dataclass(value):
        return describe(value)
    text = json.dumps(value, default=str) if isinstance(value, dict | list) else repr(value)
    return text if len(text) <= 160 else text[:157] + "..."
