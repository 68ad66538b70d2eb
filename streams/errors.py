"""Which failures are an outage (retry the same records later) and which are about the records themselves.

Shared by the engine's transactional workers and the handlers' consumer; kept apart from both so that a
handler process does not import (and export) the engine's metrics.
"""

from __future__ import annotations

import asyncio

from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError


def is_transient(error: BaseException | None) -> bool:
    """Whether `error` says the broker is unavailable (retry the same records later) rather than that these
    records cannot be committed (isolate them and dead-letter the culprit)."""
    if isinstance(error, KafkaError):
        return bool(getattr(error, "retriable", False)) or isinstance(error, KafkaConnectionError | KafkaTimeoutError)
    return isinstance(error, asyncio.TimeoutError | ConnectionError)
