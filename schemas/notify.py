"""The projector's "the read model moved" signal: PostgreSQL NOTIFY on commit, LISTEN in the gateway.

Why: a command names an instance the gateway authorises against the read model (tenant, an agent's
limits from the instance's template), and a client acting on an event it read from `workflow.events` can
be ahead of the projector (issue 9.7). The gateway used to poll the read model (20 ms doubling to 250 ms),
so a decision waited for the projector *plus* up to one polling step: p50 150-200 ms (issue 15). With
the projector notifying in each batch's transaction (delivered at commit, one notification per batch), a
waiting request re-reads at once when the rows it waits for can have arrived: the checks are exactly as
strict as before, only the idle sleeps are gone. Polling stays as the fallback (a listener connection
that dropped, a PostgreSQL restart), so a lost notification costs latency, never a wrong answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import asyncpg

log = logging.getLogger("flowline.notify")

CHANNEL = "flowline_read_model"  # NOTIFY'd by store/projector.py in every batch that changed the read model
NOTIFY_SQL = f"SELECT pg_notify('{CHANNEL}', '')"


class ReadModelSignal:
    """Wakes every waiter on each projector commit. `armed()` before reading, `wait(armed, t)` after a miss:
    a notification that lands between the read and the wait is never lost."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._conn: asyncpg.Connection | None = None

    @property
    def listening(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    def armed(self) -> asyncio.Event:
        return self._event

    def fire(self, *_: Any) -> None:
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def wait(self, armed: asyncio.Event, timeout: float) -> None:
        """Until the projector commits after `armed` was taken, or `timeout` seconds."""
        if timeout <= 0:
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(armed.wait(), timeout)

    async def listen(self, dsn: str, *, timeout: float = 5.0) -> None:
        """Best effort: without a listener every waiter falls back to polling."""
        try:
            conn = await asyncpg.connect(dsn, timeout=timeout)
            await conn.add_listener(CHANNEL, self.fire)
            conn.add_termination_listener(lambda _conn: self.fire())
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("not listening for read-model notifications (%r); polling instead", exc)
            return
        self._conn = conn

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close(timeout=2)
