"""Microbenchmark of the pure core: µs per `decide`, per expression evaluation and per trigger match.

The trigger match is measured with 10, 100 and 1,000 ACTIVE templates of one tenant on one topic, each
pinned to its own `metadata.type`: testing every template (`matching_templates`, what the matcher did)
beside `TriggerIndex` (what it does), in the same run.

Run: `.venv/bin/python bench/core_bench.py` (optionally `--profile approval` to print a cProfile of one case).
Each case is timed with time.perf_counter over a loop after a warm-up; the table shows the median of
several runs, so one noisy run does not move the number.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core import commands as cmd
from core.actors import Actor
from core.builtin import builtin_template
from core.decide import decide
from core.expressions import compile_expression
from core.template import compile_template, parse_template
from core.triggers import TriggerIndex, matching_templates

NOW = 1_700_000_000_000
RUNS = 7


def _compiled(name: str):
    return compile_template(parse_template(builtin_template(name), template_id=name, version=1, tenant_id="t1"))


def _start(template, trigger: dict) -> cmd.StartInstance:
    return cmd.StartInstance(command_id="start:i1", instance_id="i1", template_id=template.template.template_id,
                             template_version=1, tenant_id="t1", trigger=trigger)


def cases() -> dict[str, Callable[[], object]]:
    procurement = _compiled("procurement_approval")
    start = _start(procurement, {"id": "tr_1", "amount": 5000, "currency": "USD"})
    at_cfo = decide(None, start, procurement, NOW).state
    approve = cmd.RecordDecision(command_id="c2", instance_id="i1", step=2, decision="approve",
                                 actor=Actor(id="u_cfo", roles=("cfo",)))
    at_manager = decide(at_cfo, approve, procurement, NOW + 1).state
    manager = cmd.RecordDecision(command_id="c3", instance_id="i1", step=3, decision="approve",
                                 actor=Actor(id="u_fm", roles=("finance_manager",)))
    at_action = decide(at_manager, manager, procurement, NOW + 2).state
    result = cmd.ReportStepResult(command_id="c4", instance_id="i1", step=4, attempt=1, outcome="succeeded",
                                  output={"transfer": "done"})
    small = _start(procurement, {"id": "tr_2", "amount": 500})
    expression = compile_expression("trigger.amount <= 1000 and trigger.currency in ['USD', 'EUR']")
    names = {"trigger": {"amount": 500, "currency": "EUR"}}
    matching = {}
    for n in (10, 100, 1000):
        pinned = [dataclasses.replace(procurement.template, template_id=f"tpl_{i}", trigger_config={"conditions": [
            {"field": "metadata.type", "op": "eq", "value": f"kind-{i}"}, {"field": "amount", "op": "gt", "value": 0}]})
            for i in range(n)]
        event = {"tenant_id": "t1", "amount": 100, "metadata": {"type": "kind-0"}}
        index = TriggerIndex(pinned)
        matching[f"match: {n} templates, every one tested"] = (
            lambda pinned=pinned, event=event: matching_templates(pinned, "payments.transfers", event))
        matching[f"match: {n} templates, TriggerIndex"] = (
            lambda index=index, event=event: index.matching("payments.transfers", event))
    return matching | {
        "decide: approval (step 2 -> request step 3)": lambda: decide(at_cfo, approve, procurement, NOW + 1),
        "decide: start procurement (amount 5000)": lambda: decide(None, start, procurement, NOW),
        "decide: start procurement (amount 500)": lambda: decide(None, small, procurement, NOW),
        "decide: handler result (completes)": lambda: decide(at_action, result, procurement, NOW + 3),
        "expression: evaluate": lambda: expression.evaluate(names),
    }


def measure(fn: Callable[[], object], *, seconds: float = 0.2) -> float:
    """Median µs per call over RUNS timed loops, each sized to take about `seconds`."""
    for _ in range(200):
        fn()
    loops = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(loops):
            fn()
        elapsed = time.perf_counter() - t0
        if elapsed > seconds / 4:
            break
        loops *= 2
    loops = max(1, int(loops * seconds / max(elapsed, 1e-9)))
    samples = []
    for _ in range(RUNS):
        t0 = time.perf_counter()
        for _ in range(loops):
            fn()
        samples.append((time.perf_counter() - t0) / loops * 1e6)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", metavar="CASE", help="profile the first case whose name contains CASE")
    args = parser.parse_args()
    table = cases()
    if args.profile:
        name, fn = next((n, f) for n, f in table.items() if args.profile in n)
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(5000):
            fn()
        profiler.disable()
        print(name)
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(35)
        return
    width = max(len(n) for n in table)
    print(f"{'case':<{width}}  µs/op (median of {RUNS})")
    for name, fn in table.items():
        print(f"{name:<{width}}  {measure(fn):8.1f}")


if __name__ == "__main__":
    main()
