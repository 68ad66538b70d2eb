"""PRD-127's Python API (`ApprovalManager`, `TemplateRegistry`, `PipelineRunner`) as a thin layer over the
REST client.

Nothing is decided here: the engine judges every approval (eligible approver, quorum, separation of
duties) and the gateway every permission; these classes name the PRD's operations, compose the client's
calls, and read answers back from the read model. Where the PRD's word and Flowline's differ:

- an approval request is an instance's waiting approval step, named `"<instance_id>:<step>"`;
- "who" is a token: pass `approver=` / `requester=` as another token (or client), else the manager's own;
- a pipeline is a manual-trigger template of non-approval steps, and a run of it is an instance, so
  `execute(pipeline_id)` returns a `PipelineResult` whose `run_id` the other methods take;
- `create_from_template` returns the new `Template` (the server applies the overrides, `core.overrides`,
  validates and creates it);
- `StateMachine` builds a state-machine template document (`states` + `transitions`, docs/state-machines.md)
  that the engine runs; `transition` and `get_available_transitions` are the instance's
  `/transitions` endpoints, judged by the engine and `core.machine_run`.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from core.quorum import APPROVED, check_quorum, committee_members, parse_level
from core.types import ApprovalLevel
from flowline.client.aio import AsyncClient
from flowline.client.errors import FlowlineError, NotFound
from flowline.client.models import (
    CommandAccepted,
    InstanceDetail,
    StepExecution,
    Template,
    TimelineEntry,
    parse_time,
)
from flowline.overrides import apply_overrides

Who = AsyncClient | str | None


def _as(client: AsyncClient, who: Who) -> AsyncClient:
    if who is None:
        return client
    if isinstance(who, AsyncClient):
        return who
    return client.with_token(who)


def split_request_id(request_id: str) -> tuple[str, int]:
    instance_id, _, step = request_id.rpartition(":")
    if not instance_id or not step.isdigit():
        raise ValueError(f"approval request ids look like <instance_id>:<step>, not {request_id!r}")
    return instance_id, int(step)


# --------------------------------------------------------------------------------------------------- approvals

@dataclass(frozen=True)
class ApprovalRequest:
    request_id: str  # "<instance_id>:<step>"
    workflow_id: str  # the instance id
    requester: str  # who started the instance
    approvers: Any
    level: str  # SINGLE | DUAL | COMMITTEE
    status: str  # the step's status: IN_PROGRESS, APPROVED, REJECTED, TIMED_OUT, ...
    step: int = 0
    step_name: str = ""
    template_id: str = ""
    required: int = 1
    approvals: int = 0
    decided_by: tuple[str, ...] = ()
    deadline: datetime | None = None


@dataclass(frozen=True)
class ApprovalDecision:
    decision_id: str  # the command id the engine recorded the decision under
    request_id: str
    approver: str
    action: str  # "approve" | "reject"
    reason: str
    timestamp: datetime | None
    instance_status: str = ""


def _level(required: int, approvers: Any) -> str:
    if required <= 1:
        return ApprovalLevel.SINGLE.value
    return ApprovalLevel.DUAL.value if required == 2 and not committee_members(approvers) else \
        ApprovalLevel.COMMITTEE.value


def _request(detail: InstanceDetail, step: StepExecution) -> ApprovalRequest:
    required = int(step.required or 1)
    return ApprovalRequest(
        request_id=f"{detail.id}:{step.step}", workflow_id=detail.id, requester=detail.initiated_by.id,
        approvers=step.approvers, level=_level(required, step.approvers), status=step.status, step=step.step,
        step_name=step.name, template_id=detail.template_id, required=required, approvals=len(step.approved_by),
        decided_by=tuple(v.get("actor_id", "") for v in step.votes),
        deadline=parse_time((detail.blocking.get("next_timer") or {}).get("fire_at"))
        if detail.current_step == step.step else None)


class ApprovalManager:
    """PRD component 3 over the API. `client` is the default principal of every call."""

    def __init__(self, client: AsyncClient) -> None:
        self.client = client

    async def create_request(self, workflow_id: str, requester: Who = None, level: str | None = None, *,
                             trigger_data: Mapping[str, Any] | None = None, request_key: str | None = None,
                             timeout: float = 30.0) -> ApprovalRequest:
        """Start an instance of template `workflow_id` and return the approval it waits for first.

        `request_key` makes it idempotent (the same key is the same instance). `level`, if given, reaches
        the trigger as `approval_level` (what `{{trigger.approval_level}}` sees); the template's steps decide
        the real level, which the returned request reports.
        """
        data = {**dict(trigger_data or {}), **({"approval_level": level} if level else {})}
        started = await _as(self.client, requester).start_instance(
            workflow_id, data, wait=True, idempotency_key=request_key or f"approval-request-{uuid.uuid4().hex}")
        detail = await self.client.wait_for_instance(
            started.instance_id if isinstance(started, CommandAccepted) else started.id,
            lambda i: i.finished or i.blocking.get("waiting_for") == "approval", timeout=timeout)
        if detail.finished or detail.current_step is None:
            raise FlowlineError(f"instance {detail.id} finished ({detail.status}) without waiting for an approval")
        step = detail.step(detail.current_step)
        assert step is not None
        return _request(detail, step)

    async def get_request(self, request_id: str) -> ApprovalRequest:
        instance_id, number = split_request_id(request_id)
        detail = await self.client.get_instance(instance_id)
        step = detail.step(number)
        if step is None or step.type != "approval":
            raise NotFound(404, {"detail": f"no approval request {request_id}"})
        return _request(detail, step)

    async def _decide(self, action: str, request_id: str, approver: Who, reason: str,
                      idempotency_key: str | None) -> ApprovalDecision:
        instance_id, number = split_request_id(request_id)
        who = _as(self.client, approver)
        send = who.approve if action == "approve" else who.reject
        detail = await send(instance_id, number, reason or None, wait=True, idempotency_key=idempotency_key)
        if isinstance(detail, CommandAccepted):  # the read model was slow: read it once more
            detail = await who.wait_for_instance(instance_id, lambda i: any(
                t.command_id == detail.command_id for t in i.timeline))
        entry = _decision_entry(detail.timeline, number, reason)
        return ApprovalDecision(decision_id=entry.command_id if entry else "", request_id=request_id,
                                approver=entry.actor.id if entry else "", action=action, reason=reason,
                                timestamp=entry.at if entry else None, instance_status=detail.status)

    async def approve(self, request_id: str, approver: Who = None, reason: str = "", *,
                      idempotency_key: str | None = None) -> ApprovalDecision:
        """Approve as `approver`; `Conflict` with the engine's reason if it may not. With
        `idempotency_key`, a retried call returns the first decision instead of a duplicate's rejection."""
        return await self._decide("approve", request_id, approver, reason, idempotency_key)

    async def reject(self, request_id: str, approver: Who = None, reason: str = "", *,
                     idempotency_key: str | None = None) -> ApprovalDecision:
        return await self._decide("reject", request_id, approver, reason, idempotency_key)

    async def escalate(self, request_id: str, new_approvers: Any = None, *, by: Who = None, reason: str = "",
                       timeout_hours: float | None = None) -> ApprovalRequest:
        """Hand the waiting approval to the template's escalation target now (a step approver who has not
        voted, or a workflow_admin, may). `new_approvers`, if given, must equal that target: the engine
        refuses any other, so an approver can never choose who counts next (docs/security.md)."""
        instance_id, number = split_request_id(request_id)
        await _as(self.client, by).escalate(instance_id, number, new_approvers, reason=reason or None,
                                            timeout_hours=timeout_hours, wait=True)
        return await self.get_request(request_id)

    async def check_quorum(self, request_id: str) -> bool:
        """Have enough distinct approvers approved? (core.quorum over the votes the engine recorded.)"""
        request = await self.get_request(request_id)
        if request.status == "APPROVED":
            return True
        detail = await self.client.get_instance(request.workflow_id)
        step = detail.step(request.step)
        votes = [str(v.get("decision", "")) for v in (step.votes if step else [])]
        level = parse_level(request.level) or ApprovalLevel.SINGLE
        return check_quorum(level, request.required, committee_members(request.approvers), votes) == APPROVED

    async def get_pending_approvals(self, approver: Who = None) -> list[ApprovalRequest]:
        """Approvals waiting for `approver` (the gateway matches roles, users and agent permissions)."""
        items = await _as(self.client, approver).pending()
        return [ApprovalRequest(
            request_id=f"{p.instance_id}:{p.step}", workflow_id=p.instance_id, requester="", approvers=p.approvers,
            level=_level(p.required, p.approvers), status="IN_PROGRESS", step=p.step, step_name=p.step_name,
            template_id=p.template_id, required=p.required, approvals=p.approvals, decided_by=tuple(p.decided_by),
            deadline=p.deadline) for p in items]


def _decision_entry(timeline: Sequence[TimelineEntry], step: int, reason: str) -> TimelineEntry | None:
    found = [t for t in timeline if t.event_type == "DecisionRecorded" and t.step == step
             and (not reason or t.reasoning == reason)]
    return found[-1] if found else None


# --------------------------------------------------------------------------------------------------- templates

class TemplateRegistry:
    """PRD component 5 over the API: the tenant's templates, and new ones from old with overrides."""

    def __init__(self, client: AsyncClient) -> None:
        self.client = client

    async def register_template(self, document: Mapping[str, Any]) -> Template:
        """Create the template, or publish a new version of the template with the same name."""
        existing = await self._by_name(str(document.get("name", "")))
        if existing is None:
            return await self.client.create_template(document)
        return await self.client.update_template(existing.id, document)

    async def get_template(self, name: str) -> Template:
        """By id or by name; `NotFound` if neither."""
        try:
            return await self.client.get_template(name)
        except NotFound:
            found = await self._by_name(name)
            if found is None:
                raise
            return await self.client.get_template(found.id)

    async def list_templates(self, status: str | None = None) -> list[Template]:
        return [t async for t in self.client.iter_templates(status)]

    async def create_from_template(self, name: str, overrides: Mapping[str, Any]) -> Template:
        """A new template: `name`'s current document with `overrides` applied by the server
        (`POST .../instantiate`, `core.overrides`; `OverrideError` on the client first for a bad override,
        `ValidationFailed` with every pointer for an invalid result), then created."""
        source = await self.get_template(name)
        apply_overrides(source.document, overrides)  # a bad override raises OverrideError here, before any call
        return await self.client.instantiate_template(source.id, overrides)  # applied, validated, created

    async def _by_name(self, name: str) -> Template | None:
        async for template in self.client.iter_templates():
            if template.name == name:
                return template
        return None


# --------------------------------------------------------------------------------------------------- pipelines

@dataclass(frozen=True)
class PipelineStep:
    """One automated step: `action` is the step (`{"type": "external", "config": {...}}`; any type but
    approval); `condition`, if set, is an expression over `trigger`/`steps` that must hold for the step
    to run (else it is skipped); `on_failure` (`fail_workflow`, `skip`, `human_review`, `retry`) and
    `timeout` (seconds, one attempt) go into the step's config."""

    name: str
    action: Mapping[str, Any]
    condition: str | None = None
    on_failure: str | None = None
    timeout: float | None = None
    step_id: str = ""


@dataclass(frozen=True)
class PipelineResult:
    pipeline_id: str  # the template
    run_id: str  # the instance
    status: str
    steps_completed: list[str]
    steps_failed: list[str]  # steps whose latest attempt failed
    duration: float | None  # seconds from start to end (or to the last update while running)
    outputs: dict[str, Any]
    failures: list[dict[str, Any]] = field(default_factory=list)  # every failed attempt: step, attempt, error
    current_step: str | None = None


def pipeline_template(name: str, steps: Sequence[PipelineStep | Mapping[str, Any]], *,
                      description: str = "") -> dict[str, Any]:
    """The template document of a pipeline. A step with a `condition` becomes a condition step that skips
    it when false, followed by the step itself."""
    if not steps:
        raise ValueError("a pipeline needs at least one step")
    parsed = [s if isinstance(s, PipelineStep) else PipelineStep(name=str(s.get("name", "")), action={
        k: v for k, v in s.items() if k not in ("condition", "on_failure", "timeout")},
        condition=s.get("condition"), on_failure=s.get("on_failure"), timeout=s.get("timeout")) for s in steps]
    out: list[dict[str, Any]] = []
    for index, step in enumerate(parsed):
        action = dict(step.action)
        if action.get("type") == "approval":
            raise ValueError(f"pipeline step {index + 1} ({step.name}) is an approval; pipelines run without "
                             "humans (use an approval template instead)")
        config = dict(action.get("config") or {})
        if step.on_failure:
            config["on_failure"] = step.on_failure
        if step.timeout is not None:
            config["timeout_seconds"] = step.timeout
        if step.condition:
            # the guarded step is number len(out) + 2; skipping it goes to the one after (or completes)
            after = len(out) + 3
            last = index == len(parsed) - 1
            out.append({"type": "condition", "name": f"{step.name}: condition", "config": {
                "expression": step.condition, "if_true": "continue",
                "if_false": "complete" if last else f"skip_to:{after}"}})
        out.append({**action, "name": step.name or action.get("name", f"step {index + 1}"), "config": config})
    return {"name": name, "description": description, "trigger_type": "manual", "steps": out}


def pipeline_result(detail: InstanceDetail) -> PipelineResult:
    """What a run did, from the instance and its step executions (one row per attempt)."""
    latest: dict[int, StepExecution] = {}
    failures: list[dict[str, Any]] = []
    for execution in sorted(detail.steps, key=lambda s: (s.step, s.attempt)):
        latest[execution.step] = execution
        if execution.status == "FAILED" or (execution.error and execution.status != "COMPLETED"):
            failures.append({"step": execution.name, "number": execution.step, "attempt": execution.attempt,
                             "error": execution.error})
    for entry in detail.timeline:
        if entry.event_type == "StepFailed":
            failure = {"step": _step_name(detail, entry.step), "number": entry.step,
                       "attempt": entry.details.get("attempt"), "error": entry.details.get("error") or entry.reasoning}
            if not any(f["number"] == failure["number"] and f["attempt"] == failure["attempt"] for f in failures):
                failures.append(failure)
    ordered = [latest[n] for n in sorted(latest)]
    completed = [s.name for s in ordered if s.status == "COMPLETED" and s.type != "condition"]
    failed = [s.name for s in ordered if s.status == "FAILED"]
    end = detail.completed_at or detail.updated_at
    duration = (end - detail.created_at).total_seconds() if end and detail.created_at else None
    return PipelineResult(pipeline_id=detail.template_id, run_id=detail.id, status=detail.status,
                          steps_completed=completed, steps_failed=failed, duration=duration,
                          outputs={s.name: s.output for s in ordered if s.status == "COMPLETED"
                                   and s.type != "condition" and s.output is not None},
                          failures=sorted(failures, key=lambda f: (f["number"] or 0, f["attempt"] or 0)),
                          current_step=None if detail.finished else detail.current_step_name)


def _step_name(detail: InstanceDetail, number: int | None) -> str:
    step = detail.step(number) if number is not None else None
    return step.name if step else str(number)


class PipelineRunner:
    """PRD component 4 over the API."""

    def __init__(self, client: AsyncClient, *, timeout: float = 60.0) -> None:
        self.client, self.timeout = client, timeout

    async def create_pipeline(self, name: str, steps: Sequence[PipelineStep | Mapping[str, Any]]) -> str:
        """A manual-trigger template of the steps; returns its id (the pipeline id)."""
        return (await self.client.create_template(pipeline_template(name, steps))).id

    async def execute(self, pipeline_id: str, context: Mapping[str, Any] | None = None, *,
                      wait: bool = True, idempotency_key: str | None = None) -> PipelineResult:
        """Start a run with `context` as its trigger data; with `wait`, return once it has finished (or
        after the runner's timeout, with the status it has then)."""
        started = await self.client.start_instance(pipeline_id, context or {}, wait=True,
                                                   idempotency_key=idempotency_key)
        run_id = started.instance_id if isinstance(started, CommandAccepted) else started.id
        return await self._result(run_id, wait)

    async def get_status(self, run_id: str) -> dict[str, Any]:
        detail = await self.client.get_instance(run_id)
        return {"run_id": detail.id, "pipeline_id": detail.template_id, "status": detail.status,
                "current_step": detail.current_step, "current_step_name": detail.current_step_name,
                "waiting_for": detail.blocking.get("waiting_for"), "failure_reason": detail.failure_reason,
                "steps": [{"step": s.step, "name": s.name, "attempt": s.attempt, "status": s.status, "error": s.error}
                          for s in detail.steps]}

    async def pause(self, run_id: str, reason: str = "") -> None:
        await self.client.pause(run_id, reason or None, wait=True)

    async def resume(self, run_id: str, *, wait: bool = True) -> PipelineResult:
        await self.client.resume(run_id, wait=True)
        return await self._result(run_id, wait)

    async def retry_step(self, run_id: str, step_id: int | str, *, wait: bool = True) -> PipelineResult:
        """Retry a failed run's step (its number, or its name) and, with `wait`, return once it finished."""
        number = step_id if isinstance(step_id, int) else await self._number(run_id, step_id)
        await self.client.retry_step(run_id, number, wait=True)
        return await self._result(run_id, wait, after_retry=True)

    async def _number(self, run_id: str, name: str) -> int:
        detail = await self.client.get_instance(run_id)
        for step in detail.steps:
            if step.name == name:
                return step.step
        raise NotFound(404, {"detail": f"run {run_id} has no step named {name!r}"})

    async def _result(self, run_id: str, wait: bool, after_retry: bool = False) -> PipelineResult:
        """The server's result (`GET .../result`, `core.results`), once the run finished if `wait`."""
        if wait:
            with contextlib.suppress(TimeoutError):  # after the timeout: the result as it is now
                await self.client.wait_for_instance(run_id, lambda i: i.finished, timeout=self.timeout)
        data = await self.client.result(run_id)
        return PipelineResult(pipeline_id=data["pipeline_id"], run_id=data["run_id"], status=data["status"],
                              steps_completed=list(data["steps_completed"]), steps_failed=list(data["steps_failed"]),
                              duration=data["duration"], outputs=dict(data["outputs"]),
                              failures=list(data["failures"]), current_step=data["current_step"])


# ----------------------------------------------------------------------------------------------- state machines

class StateMachine:
    """PRD component 2 over the API: build a state-machine template, register it, and move its instances.

    The document is plain data (`document()`); `validate_workflow` and `visualize` apply the engine's own
    rules (`core.validation`), so a problem shows here with the same JSON pointer the server would give.
    """

    def __init__(self, client: AsyncClient, name: str, *, trigger_type: str = "manual",
                 trigger_config: Mapping[str, Any] | None = None, description: str = "") -> None:
        self.client = client
        self.name, self.trigger_type, self.description = name, trigger_type, description
        self.trigger_config = dict(trigger_config or {})
        self.states: list[dict[str, Any]] = []
        self.transitions: list[dict[str, Any]] = []
        self.template_id: str | None = None

    def add_state(self, name: str, *, entry_actions: Sequence[Mapping[str, Any]] = (),
                  exit_actions: Sequence[Mapping[str, Any]] = (), terminal: str | None = None) -> StateMachine:
        """A state; the first one added is the initial state. `terminal`: COMPLETED, FAILED or CANCELLED."""
        state: dict[str, Any] = {"name": name}
        if entry_actions:
            state["entry_actions"] = [dict(a) for a in entry_actions]
        if exit_actions:
            state["exit_actions"] = [dict(a) for a in exit_actions]
        if terminal:
            state["terminal"] = terminal
        self.states.append(state)
        return self

    def add_transition(self, from_state: str, to_state: str, *, condition: str | None = None,
                       automatic: bool = False, action: Mapping[str, Any] | None = None,
                       requires_approval: Mapping[str, Any] | None = None,
                       roles: Sequence[str] = (), after_seconds: float | None = None,
                       after_minutes: float | None = None, after_hours: float | None = None,
                       at: str | int | None = None) -> StateMachine:
        """A transition. With a time (`after_*` in `from_state`, or `at` a deadline such as
        "{{trigger.review_by}}") the engine takes it by itself when it falls due (docs/state-machines.md)."""
        transition: dict[str, Any] = {"from": from_state, "to": to_state}
        for key, value in (("after_seconds", after_seconds), ("after_minutes", after_minutes),
                           ("after_hours", after_hours), ("at", at)):
            if value is not None:
                transition[key] = value
        if condition:
            transition["condition"] = condition
        if automatic:
            transition["automatic"] = True
        if action is not None:
            transition["action"] = dict(action)
        if requires_approval is not None:
            transition["requires_approval"] = dict(requires_approval)
        if roles:
            transition["roles"] = list(roles)
        self.transitions.append(transition)
        return self

    def document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"name": self.name, "trigger_type": self.trigger_type,
                               "trigger_config": self.trigger_config, "states": self.states,
                               "transitions": self.transitions}
        if self.description:
            doc["description"] = self.description
        return doc

    def validate_workflow(self) -> list[dict[str, str]]:
        """Every problem at once, each `{pointer, message}` (empty: valid)."""
        from core.validation import validate_template

        return [p.as_dict() for p in validate_template(self.document())]

    def visualize(self) -> dict[str, Any]:
        """`{adjacency, mermaid}`: the states and transitions, Mermaid `stateDiagram-v2`."""
        from core.validation import visualize

        return visualize(self.document())

    async def register(self) -> Template:
        """Create the template (the server validates it again); its id is kept for `start`."""
        template = await self.client.create_template(self.document())
        self.template_id = template.id
        return template

    async def start(self, context: Mapping[str, Any] | None = None, *, who: Who = None) -> str:
        """Start an instance of the registered template; returns its id."""
        if self.template_id is None:
            raise FlowlineError("register() the state machine first")
        started = await _as(self.client, who).start_instance(self.template_id, dict(context or {}), wait=True)
        return started.instance_id if isinstance(started, CommandAccepted) else started.id

    async def transition(self, instance_id: str, target_state: str, reason: str = "", *, who: Who = None,
                         wait: bool = True) -> Any:
        """Request the transition (as `who`); the engine refuses with why (409) if it is not available."""
        return await _as(self.client, who).request_transition(instance_id, target_state, reason or None, wait=wait)

    async def get_available_transitions(self, instance_id: str, *, who: Who = None) -> Any:
        """The current state and each transition: available to `who` now, or why not."""
        return await _as(self.client, who).transitions(instance_id)
