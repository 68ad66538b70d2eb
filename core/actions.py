"""Which actions an actor may take on an instance now: the state machine's answer for the API's
`agent-actions` (and any other client that wants to show only the buttons that can work).

It mirrors what `decide` accepts: decisions only on an ACTIVE instance's approval that waits for this
actor (`core.approvers.may_decide`, answered by the read model's pending row), a completion callback only
while the current step awaits one, `advance` and `pause` while ACTIVE, `resume` while PAUSED, `cancel`
until the instance ends, `retry` of the current step of a FAILED instance. What the actor's role allows
in general (`may`) is the caller's to say; the core says what the instance allows now.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass
from typing import Any

from core.types import WorkflowStatus

DECIDE = "decide"
CALLBACK = "callback"
ADVANCE = "advance"
OPERATE = "operate"


@dataclass(frozen=True)
class Action:
    action: str  # approve | reject | complete-external | advance | pause | resume | cancel | retry
    description: str
    step: int | None = None  # the step it acts on, for the step-level actions


def actions_now(status: str, *, may: Set[str], blocking: Mapping[str, Any], current_step: int | None,
                decidable: tuple[int, str] | None) -> list[Action]:
    """The actions open to an actor with the general rights `may` (DECIDE, CALLBACK, ADVANCE, OPERATE).

    `blocking` is `core.blocking.blocking`'s answer for the instance; `decidable` is the (step, step name)
    of the approval waiting for this actor, or None.
    """
    active = status == WorkflowStatus.ACTIVE
    actions: list[Action] = []
    if active and DECIDE in may and decidable is not None:
        step, name = decidable
        actions += [Action(verb, f"{verb} step {step} ({name})", step) for verb in ("approve", "reject")]
    if active and CALLBACK in may and blocking.get("waiting_for") == "callback":
        step = blocking.get("step")
        actions.append(Action("complete-external", f"complete external step {step} (signed callback)", step))
    if active and ADVANCE in may:
        actions.append(Action("advance", "proceed if the current step is ready"))
    if OPERATE in may:
        if active:
            actions.append(Action("pause", "pause the instance"))
        if status == WorkflowStatus.PAUSED:
            actions.append(Action("resume", "resume the instance"))
        if status in (WorkflowStatus.ACTIVE, WorkflowStatus.PAUSED):
            actions.append(Action("cancel", "cancel the instance"))
        if status == WorkflowStatus.FAILED and current_step:
            actions.append(Action("retry", f"retry failed step {current_step}", current_step))
    return actions
