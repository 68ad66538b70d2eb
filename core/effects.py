"""Effects: what the engine must do after a decision, returned as data.

The only effect besides publishing the events is a `StepRequest` to a handler topic. Timers are not
effects: they live in the instance state and the engine indexes them from there.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.types import Json


@dataclass(frozen=True, kw_only=True)
class StepRequest:
    """Ask the handler of `kind` to perform one attempt of one step.

    `request_id` is the idempotency key `instance_id:step:attempt`: handlers and receivers use it to drop
    duplicates, and the engine only accepts a result whose step and attempt match the current ones.
    `config` is the step's config with `{{trigger.*}}`, `{{steps.*}}` and `{{instance.*}}` already
    rendered; `{{secrets.*}}` and other handler-side placeholders are left for the handler.
    """

    request_id: str
    instance_id: str
    tenant_id: str
    template_id: str
    template_version: int
    step: int
    step_name: str
    step_key: str
    kind: str
    attempt: int
    config: Json
    context: Json
    requested_at: int


def idempotency_key(instance_id: str, step: int, attempt: int) -> str:
    return f"{instance_id}:{step}:{attempt}"
