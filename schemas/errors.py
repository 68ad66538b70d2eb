"""Which failures are an outage (retry the same records later) and which are about the records themselves.

Shared by the engine's transactional workers and the handlers' consumer. It lives in `schemas/` (the package
every adapter may import) so that the handlers never import the engine (`streams/`): adapters do not import
each other (tests/unit/test_import_graph.py).
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
