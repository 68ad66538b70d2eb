"""What Flowline believes about a transfer, and from whom (docs/security.md, "Payments").

A requester may state anything in a manual trigger; routing (`trigger.amount <= 1000`) and agents'
approval limits read those statements. What is paid must therefore never be what the requester stated: the
action handler pays the transfer the payment system knows, by id, at the payment system's own amount, and
only when the instance's facts agree with that record (so an instance routed or approved on a made-up amount
pays nothing). The payment system executes one transfer once, whichever instance asks; a second instance
asking for an executed transfer fails its step with a reason that names the first one.

Pure rules, used by the core (start), the gateway (manual triggers), the action handler and the payment
simulator, so each is written once.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

LOOKUP_TRANSFER = "lookup_transfer"  # the payment command that answers a transfer's record, executing nothing
EXPECTED = "expected"  # the key, in an execute_transfer command's params, of the instance's facts (`expected_facts`)
MAX_AMOUNT = 10**12  # major units; no payment this platform handles is larger, anything above is a typo or an attack


def amount_refusal(amount: Any, *, what: str = "amount") -> str | None:
    """None for an amount a trigger may carry (absent, or a finite number 0..MAX_AMOUNT), else why not."""
    if amount is None:
        return None
    if isinstance(amount, bool) or not isinstance(amount, int | float):
        return f"{what} must be a number, not {type(amount).__name__}"
    if isinstance(amount, float) and not math.isfinite(amount):
        return f"{what} must be a finite number"
    if amount < 0:
        return f"{what} must not be negative (got {amount:g})"
    if amount > MAX_AMOUNT:
        return f"{what} {amount:g} is above the largest accepted amount ({MAX_AMOUNT:g})"
    return None


def trigger_refusal(trigger: Any) -> str | None:
    """Why a trigger's facts cannot start an instance (its `amount`), or None."""
    if not isinstance(trigger, Mapping):
        return None
    return amount_refusal(trigger.get("amount"), what="trigger.amount")


def _same_amount(a: Any, b: Any) -> bool:
    try:
        return Decimal(str(a)) == Decimal(str(b))
    except (InvalidOperation, ValueError):
        return False


def disagreement(record: Mapping[str, Any], *, trigger: Any, params: Mapping[str, Any]) -> str | None:
    """How the instance's facts about a transfer differ from the payment system's record, or None.

    Compared: the amount and currency the instance's trigger stated (what routing and limits used) and
    those the step's params name. A fact the instance does not state is not compared (nothing was decided
    on it); a stated one must match exactly.
    """
    transfer_id = record.get("transfer_id")
    stated = dict(trigger) if isinstance(trigger, Mapping) else {}
    for source, facts in (("the trigger", stated), ("the step's params", params)):
        if source == "the trigger" and stated.get("id") not in (None, transfer_id) \
                and stated.get("transfer_id") not in (None, transfer_id):
            continue  # this trigger is about another object; its amount is not this transfer's
        amount, currency = facts.get("amount"), facts.get("currency")
        if amount is not None and not _same_amount(amount, record.get("amount")):
            return (f"{source} says transfer {transfer_id} is {amount} but the payment system's record is "
                    f"{record.get('amount')} {record.get('currency') or ''}".rstrip())
        if currency is not None and str(currency).upper() != str(record.get("currency") or "").upper():
            return (f"{source} says transfer {transfer_id} is in {currency} but the payment system's record is "
                    f"in {record.get('currency')}")
    return None


def executed_elsewhere(record: Mapping[str, Any], key: str) -> str | None:
    """The reason a transfer may not be executed under `key` because another payment key executed it."""
    first = record.get("executed_by")
    if not first or first == key:
        return None
    return (f"transfer {record.get('transfer_id')} already executed by instance {instance_of(first)} "
            f"(payment key {first})")


def expected_facts(*, trigger: Any, params: Mapping[str, Any], instance_id: str) -> dict[str, Any]:
    """What an instance believes about the transfer it pays, sent with the one payment command.

    Why one command: the payment service checks these facts against its own record and refuses atomically
    (unknown, mismatch, executed by another instance) in the same step that executes, so the handler needs
    no lookup round trip first (issue 15) and no race between a lookup and the payment is left to close.
    """
    stated = dict(trigger) if isinstance(trigger, Mapping) else {}
    return {"instance_id": instance_id,
            "trigger": {k: stated[k] for k in ("id", "transfer_id", "amount", "currency") if k in stated},
            "params": {k: params[k] for k in ("amount", "currency") if k in params}}


def paid_params(params: Mapping[str, Any], record: Mapping[str, Any]) -> dict[str, Any]:
    """The params a transfer executes with: the step's, without the instance's facts, at the record's amount."""
    paid = {k: v for k, v in params.items() if k != EXPECTED}
    return {**paid, "amount": record.get("amount"), "currency": record.get("currency")}


def instance_of(payment_key: str) -> str:
    """The instance named by a payment key `instance:step:v<visit>`."""
    return payment_key.split(":", 1)[0]


OPERATION_KEY = re.compile(r"^(?P<instance>.+):(?P<step>\d+):v(?P<visit>\d+)$")


def operation_key_parts(key: str) -> tuple[str, int] | None:
    """(instance id, step number) of an operation key `instance:step:v<visit>` (core/steps/action.py
    `operation_key`), or None for any other key (an action handler's `lookup:...`, a step request id)."""
    found = OPERATION_KEY.match(key)
    return (found["instance"], int(found["step"])) if found else None


class TransferBook:
    """The payment service's side of the contract, as the simulator and the tests' fake keep it.

    Transfers are known from the upstream transfer events (id -> tenant, amount, currency); each executes
    at most once: the first payment key that executes it is remembered, and a command with another key for
    the same transfer is refused with the reason. (Any real payment service Flowline pays through must keep
    the same rule; docs/security.md.)
    """

    def __init__(self) -> None:
        self.transfers: dict[str, dict[str, Any]] = {}

    def learn(self, transfer_id: str, *, tenant_id: str, amount: Any, currency: str) -> None:
        known = self.transfers.setdefault(transfer_id, {"transfer_id": transfer_id, "executed_by": None})
        known.update(tenant_id=tenant_id, amount=amount, currency=currency)

    def record(self, transfer_id: Any, tenant_id: str) -> dict[str, Any] | None:
        known = self.transfers.get(transfer_id) if isinstance(transfer_id, str) else None
        if known is None or known.get("tenant_id") not in ("", tenant_id):
            return None
        return dict(known)

    def execution_refusal(self, transfer_id: Any, tenant_id: str, key: str,
                          expected: Mapping[str, Any] | None = None) -> str | None:
        """Why the command `key` may not execute this transfer, or None (then `executed` must follow).

        `expected` (`expected_facts`) are the paying instance's facts: any that disagree with the record
        refuse the payment, so what an instance was routed or approved on is what is paid, or nothing."""
        record = self.record(transfer_id, tenant_id)
        if record is None:
            return f"transfer {transfer_id} is unknown to the payment system"
        if isinstance(expected, Mapping):
            params = expected.get("params")
            why_not = disagreement(record, trigger=expected.get("trigger"),
                                   params=params if isinstance(params, Mapping) else {})
            if why_not:
                return why_not
        return executed_elsewhere(record, key)

    def executed(self, transfer_id: str, key: str) -> None:
        known = self.transfers.setdefault(transfer_id, {"transfer_id": transfer_id, "tenant_id": ""})
        known.setdefault("executed_by", None)
        if not known["executed_by"]:
            known["executed_by"] = key
