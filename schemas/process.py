"""`run_process`: how every Flowline process starts and stops (logging, SIGTERM/SIGINT, the event loop).

Why one helper: the engine, the handlers, the gateway, the projector and the payment simulator each had a
copy of the same start-up (log format, quiet aiokafka) and signal wiring, and a fix to one (a handler
stopped while still wiring up) did not reach the others. It lives in `schemas/` because every process may
import `schemas/` and adapters never import each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Iterable

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def run_process(run: Callable[[], Awaitable[object]], stop: Callable[[], object], *,
                quiet: Iterable[str] = ("aiokafka",)) -> int:
    """Configure logging, run `run()` on a fresh event loop and call `stop()` on SIGTERM or SIGINT.

    `stop` asks `run` to finish (set an event, stop a consumer loop); a process that may be stopped before
    it is able to listen can cancel its own task from `stop` (the cancellation ends the process quietly).
    Returns the exit status (0).
    """
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    for name in quiet:
        logging.getLogger(name).setLevel(logging.WARNING)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop)
        await run()

    with contextlib.suppress(asyncio.CancelledError):
        asyncio.run(main())
    return 0
