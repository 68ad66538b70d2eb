"""Retry policy: exponential backoff with deterministic jitter; each step type gives its defaults
(`StepKind.max_retries`, `StepKind.on_failure`).

`backoff_ms` doubles per retry up to `max_backoff_ms`; jitter (up to 20% more) comes from a hash of the
request id, not from `random`, so replaying a decision gives the same retry time.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

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


def retry_policy(config: dict[str, Any], default_max_retries: int) -> RetryPolicy:
    raw = config.get("retry_config") or {}
    return RetryPolicy(
        max_retries=int(raw.get("max_retries", default_max_retries)),
        backoff_ms=int(raw.get("backoff_ms", 1000)),
        max_backoff_ms=int(raw.get("max_backoff_ms", 3_600_000)),
    )


def on_failure(config: dict[str, Any], default: str) -> str:
    return str(config.get("on_failure") or default)
