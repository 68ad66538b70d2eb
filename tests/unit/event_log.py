"""Event logs as JSON, for the replay fixtures in tests/fixtures/logs (STYLE point 7).

`python -m tests.unit.event_log` records the scenarios below with the current core; commit the files once
and never regenerate them for a released meaning: tests/unit/test_replay_fixtures.py replays them with the
current `apply` and compares the final state, so a change of meaning breaks a test.
"""

from __future__ import annotations

import json
import typing
from dataclasses import MISSING, fields, is_dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from core import events as ev
from core.actors import Actor, ApprovalLimits
from core.types import ActorKind
from tests.unit.harness import HOUR, Harness, agent, human

LOGS = Path(__file__).resolve().parent.parent / "fixtures" / "logs"
EVENTS_BY_NAME = {cls.__name__: cls for cls in ev.EVENT_TYPES}


def to_json(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        data = {f.name: to_json(getattr(value, f.name)) for f in fields(value)}
        # events are {"type": ..., "data": {...}}: StepStarted has a field called `type` of its own
        return {"type": type(value).__name__, "data": data} if isinstance(value, ev.Event) else data
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple | list):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    return value


def to_json_as_recorded(value: Any, recorded: Any) -> Any:
    """`to_json`, leaving out fields the recording does not have while they hold their default.

    A field added with a default after a log was recorded is what the earlier release meant (STYLE point 7:
    a new meaning is a new event or a new field with a default); any other difference still shows.
    """
    if is_dataclass(value) and not isinstance(value, type):
        shape = recorded.get("data", recorded) if isinstance(recorded, dict) else {}
        data = {}
        for f in fields(value):
            current = getattr(value, f.name)
            if f.name not in shape and f.default is not MISSING and current == f.default:
                continue
            data[f.name] = to_json_as_recorded(current, shape.get(f.name))
        return {"type": type(value).__name__, "data": data} if isinstance(value, ev.Event) else data
    if isinstance(value, tuple | list):
        items = recorded if isinstance(recorded, list) else []
        return [to_json_as_recorded(v, items[i] if i < len(items) else None) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    return to_json(value)


def actor_from_json(data: dict[str, Any]) -> Actor:
    limits = data.get("approval_limits")
    return Actor(id=data["id"], kind=ActorKind(data["kind"]), roles=tuple(data["roles"]), tenant_id=data["tenant_id"],
                 display_name=data["display_name"],
                 approval_limits=None if limits is None else ApprovalLimits(
                     max_amount=limits["max_amount"], step_names=tuple(limits["step_names"])))


def event_from_json(record: dict[str, Any]) -> ev.Event:
    cls = EVENTS_BY_NAME[record["type"]]
    data = record["data"]
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in fields(cls):
        if f.name not in data:
            continue  # an event recorded before a field with a default was added
        raw = data[f.name]
        hint = hints[f.name]
        if hint is Actor:
            values[f.name] = actor_from_json(raw)
        elif typing.get_origin(hint) is tuple:
            values[f.name] = tuple(raw)
        else:
            values[f.name] = raw
    return cls(**values)


def write(name: str, h: Harness) -> None:
    log = {"template": h.template.template.template_id, "template_version": h.template.template.version,
           "events": [to_json(e) for e in h.events], "final_state": to_json(h.state)}
    (LOGS / f"{name}.json").write_text(json.dumps(log, indent=1) + "\n")


def scenarios() -> dict[str, Harness]:
    procurement = Harness("procurement_approval", instance_id="wfi_fixture_procurement")
    procurement.start({"id": "tr_1", "amount": 5000, "currency": "USD"}, initiated_by=human("u_req"))
    procurement.approve(2, human("u_req", "cfo"))  # rejected: the requester
    procurement.approve(2, human("u_cfo", "cfo"), "budgeted")
    procurement.pause("quarter close")
    procurement.fire_due_timers(30 * HOUR)
    procurement.resume()
    procurement.fire_due_timers()
    procurement.retry(3)
    procurement.approve(3, agent("agent_456", max_amount=10_000, step_names=("Manager Approval",)), "within limit")
    procurement.fail(4, "gateway timeout")
    procurement.fire_due_timers(5000)
    procurement.succeed(4, {"transfer_status": "completed"})

    trade = Harness("trade_approval", instance_id="wfi_fixture_trade")
    trade.start({"id": "tr_2", "amount": 80_000})
    trade.approve(1, human("r_1", "risk_officer"))
    trade.approve(1, human("r_1", "risk_officer"))
    trade.fire_due_timers(4 * HOUR)
    trade.fire_due_timers(2 * HOUR)

    compliance = Harness("compliance_review", instance_id="wfi_fixture_compliance")
    compliance.start({"id": "tr_3", "amount": 120, "metadata": {"compliance": "required"}})
    compliance.accept(1)
    compliance.callback(1, "completed", {"compliance_status": "review", "risk_score": 0.7})
    compliance.approve(3, human("co_alice"))
    compliance.reject(3, human("co_bob"), "unclear source of funds")
    compliance.approve(3, human("co_carol"))
    compliance.succeed(4, {"transfer_status": "completed"})

    model = Harness("model_deployment", instance_id="wfi_fixture_model")
    model.start({"validation_url": "https://v.test/run", "model": "pricing", "version": "7",
                 "deploy_at": "2026-01-01T06:00:00Z", "owner_email": "owner@x.test"})
    model.succeed(1, {"status": 503})
    model.fire_due_timers(1000)
    model.succeed(1, {"status": 200, "body": {"passed": True, "metrics": {"auc": 0.91}}})
    model.approve(2, agent("agent_mrm", limits=False), "metrics above the bar")
    model.proceed()
    model.fire_due_timers(6 * HOUR)
    model.succeed(4, {"status": 250})

    onboarding = Harness("account_onboarding", instance_id="wfi_fixture_onboarding")
    onboarding.start({"metadata": {"customer_id": "c_1", "email": "new@x.test"}})
    onboarding.succeed(1, {"status": 200, "body": {"kyc_level": 1}})
    onboarding.fire_due_timers(72 * HOUR)
    return {"procurement_approval": procurement, "trade_approval": trade, "compliance_review": compliance,
            "model_deployment": model, "account_onboarding": onboarding}


if __name__ == "__main__":
    LOGS.mkdir(parents=True, exist_ok=True)
    for name, harness in scenarios().items():
        write(name, harness)
        print(f"{name}: {len(harness.events)} events, {harness.state.status.value}")
