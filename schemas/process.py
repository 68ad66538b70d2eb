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


async def wait_for_kafka(bootstrap_servers: str, stop: asyncio.Event, *, first_delay: float = 0.5,
                         max_delay: float = 5.0) -> bool:
    """Wait until the broker answers a metadata request, or until `stop` is set; True when it answered.

    Why: a process started before its broker (containers start in any order; a broker restarting after a
    crash) used to die at its first client's `start()` with a traceback. It now says what it waits for and
    retries with a doubling delay; once the broker answered, a later outage is the clients' own business
    (they reconnect)."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import KafkaConnectionError

    log = logging.getLogger("flowline.kafka")
    delay = first_delay
    while not stop.is_set():
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
        try:
            await admin.start()
            return True
        except KafkaConnectionError as exc:
            log.warning("waiting for the Kafka broker at %s (%s); next try in %.1f s", bootstrap_servers, exc,
                        delay)
        finally:
            with contextlib.suppress(Exception):
                await admin.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        delay = min(delay * 2, max_delay)
    return False
