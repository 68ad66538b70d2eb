"""Workflow shapes the benchmarks run: small, automatic, and one step per handler round trip."""

from __future__ import annotations

# Three decisions' worth of work without I/O: a condition, an AUTO approval, a condition that completes.
AUTO3 = {
    "name": "Auto three steps",
    "trigger_type": "manual",
    "steps": [
        {"type": "condition", "name": "Amount known", "config": {"expression": "trigger.amount > 0"}},
        {"type": "approval", "name": "Auto approve", "config": {"level": "AUTO"}},
        {"type": "condition", "name": "Finish", "config": {"expression": "true", "if_true": "complete"}},
    ],
}

# Five action steps: every step is a full round trip engine -> handler topic -> results -> engine. A lookup,
# the action the handler performs itself (a payment would be the engine's own order: docs/adr/0023).
CHAIN5 = {
    "name": "Five actions",
    "trigger_type": "manual",
    "steps": [{"type": "action", "name": f"Action {n}", "config": {"action": "lookup_transfer",
                                                                     "params": {"transfer_id": f"tr_{n}"}}}
              for n in range(1, 6)],
}

TEMPLATES = {"tpl_auto3": AUTO3, "tpl_chain5": CHAIN5}
