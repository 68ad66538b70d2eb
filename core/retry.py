"""Retry policy: exponential backoff with deterministic jitter, and the defaults per step type.

`backoff_ms` doubles per retry up to `max_backoff_ms`; jitter (up to 20% more) comes from a hash of the
request id, not from `random`, so replaying a decision gives the same retry time.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from core.types import StepType

DEFAULT_MAX_RETRIES = {StepType.ACTION: 3, StepType.EXTERNAL: 3, StepType.NOTIFICATION: 5}
DEFAULT_ON_FAILURE = {StepType.ACTION: "fail_workflow", StepType.EXTERNAL: "fail_workflow",
                      StepType.NOTIFICATION: "skip"}
ON_FAILURE_CHOICES = ("retry", "skip", "fail_workflow", "human_review")


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 3
    backoff_ms: int = 1000
    max_backoff_ms: int = 3_600_000

    def delay_ms(self, retry_number: int, seed: str) -> int:
        """Delay before retry `retry_number` (1 for the first retry)."""
        base = min(self.backoff_ms * (2 ** max(retry_number - 1, 0)), self.max_backoff_ms)
        digest = hashlib.blake2b(seed.encode(), digest_size=2).digest()
        jitter = int.from_bytes(digest, "big") / 0xFFFF * 0.2
        return int(base * (1 + jitter))


def retry_policy(step_type: StepType, config: dict[str, Any]) -> RetryPolicy:
    raw = config.get("retry_config") or {}
    return RetryPolicy(
        max_retries=int(raw.get("max_retries", DEFAULT_MAX_RETRIES.get(step_type, 0))),
        backoff_ms=int(raw.get("backoff_ms", 1000)),
        max_backoff_ms=int(raw.get("max_backoff_ms", 3_600_000)),
    )


def on_failure(step_type: StepType, config: dict[str, Any]) -> str:
    return str(config.get("on_failure") or DEFAULT_ON_FAILURE.get(step_type, "fail_workflow"))
