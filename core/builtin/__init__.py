"""Built-in templates: the epic's procurement approval and the PRD's four, as plain template documents."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

BUILTIN_NAMES = ("procurement_approval", "trade_approval", "compliance_review", "model_deployment",
                 "account_onboarding")
# the same PRD workflows written as state machines (docs/state-machines.md); not seeded, beside the step lists
STATE_MACHINE_NAMES = ("compliance_review_sm", "model_deployment_sm")


@cache
def _load(name: str) -> str:
    return resources.files(__package__).joinpath(f"{name}.json").read_text()


def builtin_template(name: str) -> dict[str, Any]:
    """A fresh copy of a built-in template document (callers may change it)."""
    if name not in BUILTIN_NAMES and name not in STATE_MACHINE_NAMES:
        raise KeyError(f"no built-in template {name!r}; there are {', '.join(BUILTIN_NAMES + STATE_MACHINE_NAMES)}")
    return json.loads(_load(name))
