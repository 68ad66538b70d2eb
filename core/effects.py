"""Effects: what the engine must do after a decision, returned as data.

Besides publishing the events there are two: a `StepRequest` to a handler topic, and a `PaymentOrder` to the
payment service's command topic (an action step's payment, sent by the engine itself: docs/adr/0023).
Timers are not effects: they live in the instance state and the engine indexes them from there.
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


PAYMENT_KIND = "payment"  # the `StepRequested.kind` of a payment order (no handler topic has this kind)


@dataclass(frozen=True, kw_only=True)
class PaymentOrder:
    """Ask the payment service for one attempt of an action step's payment (`payments.commands`).

    The fields are the payment command's (schemas.records.PaymentCommand): `idempotency_key` is the step's
    operation key `instance:step:v<visit>` (core/steps/action.py), the same for every attempt of one visit,
    so the payment service executes a visit's payment once however often it is asked; `params` are the
    step's, rendered, and for `execute_transfer` with the instance's facts (core/payments.py). Its result
    comes back as `RecordPaymentResult`, matched by that key.
    """

    idempotency_key: str
    action: str
    tenant_id: str
    params: Json
    requested_at: int


def idempotency_key(instance_id: str, step: int, attempt: int) -> str:
    return f"{instance_id}:{step}:{attempt}"
