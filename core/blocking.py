"""Who is blocking: the answer to "where is the instance, and what does it wait for?", in one place.

The engine answers it for `advance` (`AdvanceChecked.blocking`, through `blocking_text`) and the projector
stores it in the read model (`workflow_instances.blocking`, store/projection.py), which the gateway serves.
Both call `blocking` here, so the API and the audit trail can never tell two stories. The step names and
types come from whoever holds them (the compiled template in the engine, the step metadata the projector
has seen), as a list of `{"name", "type"}` by step number.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from core.approvers import describe
from core.state import InstanceState
from core.timers import TimerPurpose
from core.types import Awaiting

StepsMeta = Sequence[Mapping[str, str]]


def blocking(state: InstanceState, steps_meta: StepsMeta) -> dict[str, Any]:
    """What the instance waits for; `next_timer.fire_at` is epoch milliseconds."""
    info: dict[str, Any] = {"status": state.status.value, "waiting_for": None}
    if state.is_terminal:
        if state.failure:
            info["reason"] = state.failure
        return info
    if state.machine_state:  # a state-machine instance: its state, and whether it rests there (core/machine.py)
        info["state"] = state.machine_state
        if state.pending_transition:
            info["pending_transition"] = state.pending_transition
        resting = not state.route and not state.pending_transition and (
            state.current is None or state.current.status.value != "IN_PROGRESS")
        if resting:
            info["waiting_for"] = "transition"
            due = [t for t in state.timers if t.purpose == TimerPurpose.TRANSITION_DUE]
            if due:  # a time-based transition will move it by itself
                first = min(due, key=lambda t: t.fire_at)
                info["next_timer"] = {"purpose": first.purpose, "fire_at": first.fire_at}
            return info
    current = state.current
    if current is None:
        return info
    meta = steps_meta[state.current_step - 1] if 0 < state.current_step <= len(steps_meta) else {}
    info.update(step=state.current_step, step_name=meta.get("name", ""), step_type=meta.get("type", ""),
                step_status=current.status.value, waiting_for=current.awaiting.value or None)
    if current.awaiting in (Awaiting.APPROVAL, Awaiting.REVIEW):
        approvals = sum(1 for v in current.counted_votes if v.decision == "approve")
        info.update(approvers=current.approvers, required=current.required, approvals=approvals,
                    remaining=max(current.required - approvals, 0), decided_by=[v.actor_id for v in current.votes])
    timers = [t for t in state.timers if t.step == state.current_step and t.step]
    if timers:
        first = min(timers, key=lambda t: t.fire_at)
        info["next_timer"] = {"purpose": first.purpose, "fire_at": first.fire_at}
    return info


def blocking_text(info: Mapping[str, Any]) -> str:
    """`blocking`'s answer as the sentence `advance` records."""
    if info.get("waiting_for") is None:
        return f"instance is {info['status']}"
    if info["waiting_for"] == "transition":
        return f"state {info['state']} waits for a requested transition"
    text = f"step {info['step']} ({info['step_name']}) waits for {info['waiting_for']}"
    if "remaining" in info:
        text += f": {info['remaining']} more approval(s) from {describe(info['approvers'])}"
    return text
