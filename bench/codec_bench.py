"""Codec cost per record: encode and decode microseconds for the engine's hottest records.

    .venv/bin/python bench/codec_bench.py [--seconds 1.0]

Prints one line per record type: encoded size, encode µs, decode µs (CPU time of this process, best of 5
runs: on a shared machine wall time also counts the time other processes had the CPU). The same value
again and again is the best case for the codec's caches of recent longs (schemas/binary.py); the
"own timestamps" line encodes and decodes 10,000 states that each have timestamps of their own.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable
from typing import Any

from core.actors import Actor
from core.commands import ReportStepResult
from core.effects import StepRequest
from core.state import InstanceState, StepState, Timer, Vote
from core.types import ActorKind, Awaiting, TaskStatus
from schemas.codec import Codec

INSTANCE = "wfi_3f1c0e2b9a7d4c6e8f0a1b2c3d"


def step_request() -> StepRequest:
    return StepRequest(
        request_id=f"{INSTANCE}:2:1",
        instance_id=INSTANCE,
        tenant_id="tenant-acme",
        template_id="tpl_high_value_transfer",
        template_version=3,
        step=2,
        step_name="Notify treasury",
        step_key="notify_treasury",
        kind="notification",
        attempt=1,
        config={"channel": "webhook", "url": "https://hooks.example.com/treasury", "body": {"amount": 125000.5}},
        context={"trigger": {"id": "evt_91", "amount": 125000.5, "currency": "USD"}, "steps": {"1": "APPROVED"}},
        requested_at=1_763_900_000_000,
    )


def step_result() -> ReportStepResult:
    return ReportStepResult(
        command_id=f"result:{INSTANCE}:2:1",
        instance_id=INSTANCE,
        issued_at=1_763_900_000_250,
        step=2,
        attempt=1,
        outcome="succeeded",
        output={"status_code": 200, "delivery_id": "dlv_7781"},
    )


def instance_state() -> InstanceState:
    approver = Vote(actor_id="user_42", actor_kind=ActorKind.HUMAN, decision="approve", at=1_763_899_990_000)
    steps = (
        StepState(step=1, status=TaskStatus.APPROVED, attempt=1, started_at=1_763_899_900_000,
                  ended_at=1_763_899_990_000, votes=(approver,), approvers=[{"role": "treasury"}], required=1,
                  output={"approved_by": ["user_42"]}),
        StepState(step=2, status=TaskStatus.IN_PROGRESS, attempt=1, awaiting=Awaiting.HANDLER,
                  started_at=1_763_900_000_000),
        StepState(step=3),
        StepState(step=4),
    )
    return InstanceState(
        instance_id=INSTANCE,
        tenant_id="tenant-acme",
        template_id="tpl_high_value_transfer",
        template_version=3,
        template_name="High-value transfer",
        current_step=2,
        steps=steps,
        trigger={"id": "evt_91", "amount": 125000.5, "currency": "USD", "source": "acc_1", "destination": "acc_2"},
        initiated_by=Actor(id="flowline", kind=ActorKind.SYSTEM),
        timers=(Timer(timer_id=f"{INSTANCE}:2:1:callback_timeout", fire_at=1_763_900_300_000,
                      purpose="callback_timeout", step=2, attempt=1),),
        seq=7,
        recent_commands=(f"start:{INSTANCE}", f"decision:{INSTANCE}:1:user_42"),
        created_at=1_763_899_900_000,
        updated_at=1_763_900_000_000,
    )


def per_call_us(fn: Callable[[], Any], seconds: float) -> float:
    n = 1
    while True:  # calibrate: a batch of about a tenth of the budget
        start = time.process_time()
        for _ in range(n):
            fn()
        elapsed = time.process_time() - start
        if elapsed > seconds / 10:
            break
        n *= 2
    best = float("inf")
    for _ in range(5):
        start = time.process_time()
        for _ in range(n):
            fn()
        best = min(best, (time.process_time() - start) / n)
    return best * 1e6


def own_timestamps(state: InstanceState, n: int) -> InstanceState:
    """The state with every timestamp moved by about n seconds: no cache of recent longs knows them."""
    d = n * 1_000_003

    def moved(t: int) -> int:
        return t + d if t else 0

    steps = tuple(dataclasses.replace(s, started_at=moved(s.started_at), ended_at=moved(s.ended_at),
                                      votes=tuple(dataclasses.replace(v, at=moved(v.at)) for v in s.votes))
                  for s in state.steps)
    return dataclasses.replace(state, steps=steps, created_at=moved(state.created_at),
                               updated_at=moved(state.updated_at),
                               timers=tuple(dataclasses.replace(t, fire_at=moved(t.fire_at)) for t in state.timers))


def each_once_us(codec: Codec, states: list[InstanceState]) -> tuple[float, float]:
    """(encode µs, decode µs) per state, each state once, best of 5 slices of the list."""
    best_encode = best_decode = float("inf")
    size = len(states) // 5
    for k in range(5):
        chunk = states[k * size:(k + 1) * size]
        start = time.process_time()
        encoded = [codec.encode(s) for s in chunk]
        best_encode = min(best_encode, (time.process_time() - start) / size)
        start = time.process_time()
        decoded = [codec.decode(d) for d in encoded]
        best_decode = min(best_decode, (time.process_time() - start) / size)
        assert decoded == chunk
    return best_encode * 1e6, best_decode * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="rough time budget per measurement")
    args = parser.parse_args()
    codec = Codec()
    print(f"{'record':<18} {'bytes':>6} {'encode µs':>10} {'decode µs':>10}")
    for name, value in (("StepRequest", step_request()), ("ReportStepResult", step_result()),
                        ("InstanceState(4)", instance_state())):
        data = codec.encode(value)
        assert codec.decode(data) == value
        encode = per_call_us(lambda v=value: codec.encode(v), args.seconds)
        decode = per_call_us(lambda d=data: codec.decode(d), args.seconds)
        print(f"{name:<18} {len(data):>6} {encode:>10.2f} {decode:>10.2f}")
    state = instance_state()
    encode, decode = each_once_us(codec, [own_timestamps(state, n) for n in range(1, 50_001)])
    print(f"{'  own timestamps':<18} {len(codec.encode(state)):>6} {encode:>10.2f} {decode:>10.2f}")


if __name__ == "__main__":
    main()
