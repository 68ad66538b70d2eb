"""How every long-lived Kafka consumer of Flowline waits, so that an idle stack sleeps (issue 15, ADR 15).

An idle consumer still costs CPU: its client wakes up for each `getmany` timeout, for the fetcher's own
timer (aiokafka's `consumer_timeout_ms`, 200 ms by default) and for each empty fetch the broker answers
after `fetch_max_wait_ms`; the broker pays for every one of those fetches too. Twelve consumers on the
stack made most of its idle CPU (docs/performance.md, "The idle stack"). None of these waits carries
latency when a record comes: with `fetch_min_bytes=1` the broker answers a held fetch the moment a record
is there, `getmany` returns as soon as the fetcher has records, and the fetcher is woken by futures for
everything it reacts to (records consumed, seeks, rebalances, resumed partitions, metadata); its timer
is only a fallback.

One wait does carry latency: a partition whose records sat unconsumed for more than aiokafka's
prefetch backoff (100 ms, e.g. a handler that is saturated), or that is paused (an engine lane with a
backlog), is left out of the next fetch, and is asked for again only once that fetch returns, after up to
`fetch_max_wait_ms` if nothing else arrives. So a consumer holds its fetches long only while it is idle,
and while it has work it fetches with the busy wait it always had (`LongPoll`): under load nothing
changes, and the first record after an idle period is answered at once.

Idle means: the last poll returned nothing, none returned a record for `IDLE_AFTER_SECONDS`, and no
partition is paused. A record left in aiokafka's buffer is returned by the next poll (which turns the
consumer busy before its next fetch is built), so an empty poll means nothing is buffered; only a paused
partition can be left out of a fetch built while the consumer waits in `getmany`. That is why one second
is enough: it was 5 s, and every consumer kept asking the broker twice a second for 5 s after its last
record, which put the stack's first seconds after a load or after its start-up probes at 2-3 times its
idle cost (docs/performance.md, "The idle window, right after start and right after load").
"""

from __future__ import annotations

import time
from typing import Any

from aiokafka import AIOKafkaConsumer

# the fetch wait of a consumer with work: what every consumer used before (aiokafka's default)
BUSY_FETCH_WAIT_MS = 500
# the fetch wait of an idle consumer: ten times fewer empty fetches; well under the request timeout (40 s)
IDLE_FETCH_WAIT_MS = 5_000
# idle: no record for this long (and no partition paused); see the module's why for "one second is enough"
IDLE_AFTER_SECONDS = 1.0
# the fetcher's fallback timer (aiokafka's `consumer_timeout_ms`): it is woken by futures for everything
# it reacts to; 200 ms (the default) woke every idle consumer five times a second for nothing
FETCHER_WAKE_MS = 1_000
# how long a loop that only waits for records (and checks a stop flag between waits) lets `getmany` wait
POLL_MS = 1_000


def consumer_options(*, busy_fetch_wait_ms: int = BUSY_FETCH_WAIT_MS) -> dict[str, Any]:
    """The AIOKafkaConsumer keyword arguments every long-lived consumer shares (see the module's why)."""
    return {"fetch_min_bytes": 1, "fetch_max_wait_ms": busy_fetch_wait_ms, "consumer_timeout_ms": FETCHER_WAKE_MS}


class LongPoll:
    """`getmany` that holds the consumer's fetches at the broker longer once it has been idle.

    aiokafka reads the fetch wait from its fetcher each time it builds a fetch request, so the switch takes
    effect with the next fetch: back to the busy wait as soon as a record was returned (before the next
    fetch is built: the fetcher builds it only when this task yields) or a partition is paused, to the idle
    wait after `idle_after` seconds without a record and with nothing paused (a paused partition is left
    out of the held fetch, and once resumed it would wait for that fetch to end).
    """

    def __init__(self, consumer: AIOKafkaConsumer, *, busy_ms: int = BUSY_FETCH_WAIT_MS,
                 idle_ms: int = IDLE_FETCH_WAIT_MS, idle_after: float = IDLE_AFTER_SECONDS) -> None:
        self.consumer = consumer
        self.busy_ms = busy_ms
        self.idle_ms = idle_ms
        self.idle_after = idle_after
        self._last_records = time.monotonic()
        self.idle = False

    async def getmany(self, *partitions, timeout_ms: int = POLL_MS, max_records: int | None = None):
        batches = await self.consumer.getmany(*partitions, timeout_ms=timeout_ms, max_records=max_records)
        self.saw(bool(batches))
        return batches

    def saw(self, records: bool) -> None:
        """Tell it whether the last poll returned records (for loops that read with their own calls)."""
        now = time.monotonic()
        if records or self.consumer.paused():
            self._last_records = now
            if self.idle:
                self._set(self.busy_ms)
                self.idle = False
        elif not self.idle and now - self._last_records >= self.idle_after:
            self._set(self.idle_ms)
            self.idle = True

    def _set(self, wait_ms: int) -> None:
        fetcher = getattr(self.consumer, "_fetcher", None)  # created by start(); pinned aiokafka (constraints.txt)
        if fetcher is not None:
            fetcher._fetch_max_wait_ms = wait_ms
