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

A consumer that trails the workflow instead of carrying it (the read model's projector and the standby
replicas: no step waits for them, ADR 22) fetches in `TRAILING` shape while it has work: the broker holds
its fetch until 64 KiB are there or `TRAILING_WAIT_MS` have passed. At 16 workflows in flight a fetch
answered at the first byte carried one engine transaction (about one fetch per workflow for the projector
alone, each a request the broker answers and a batch the projector and PostgreSQL pay for); held, one
fetch carries several. The price is that the read model trails the events by up to that wait while the
stack is busy; the first record after an idle period is still answered at once (an idle consumer fetches
with `fetch_min_bytes=1`, or it would wait out the whole idle wait). The consumers on a workflow's path
keep `fetch_min_bytes=1`: a held fetch there is latency every step pays (docs/performance.md, "Fetch
shapes").
"""

from __future__ import annotations

import time
from dataclasses import dataclass
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


@dataclass(frozen=True)
class FetchShape:
    """What a busy consumer's fetch waits for at the broker: `min_bytes`, or `wait_ms` if fewer come."""

    min_bytes: int
    wait_ms: int


# on a workflow's path: answered at the first byte, an empty fetch held the busy wait
AT_ONCE = FetchShape(min_bytes=1, wait_ms=BUSY_FETCH_WAIT_MS)
# trailing the workflow (the read model): several transactions a fetch while busy; see the module's why
TRAILING_WAIT_MS = 50
TRAILING = FetchShape(min_bytes=64 * 1024, wait_ms=TRAILING_WAIT_MS)


def consumer_options(*, shape: FetchShape = AT_ONCE) -> dict[str, Any]:
    """The AIOKafkaConsumer keyword arguments every long-lived consumer shares (see the module's why).

    `shape` is its busy fetch; pass the same shape to the consumer's `LongPoll`.
    """
    return {"fetch_min_bytes": shape.min_bytes, "fetch_max_wait_ms": shape.wait_ms,
            "consumer_timeout_ms": FETCHER_WAKE_MS}


class LongPoll:
    """`getmany` that holds the consumer's fetches at the broker longer once it has been idle.

    aiokafka reads the fetch wait from its fetcher each time it builds a fetch request, so the switch takes
    effect with the next fetch: back to the busy wait as soon as a record was returned (before the next
    fetch is built: the fetcher builds it only when this task yields) or a partition is paused, to the idle
    wait after `idle_after` seconds without a record and with nothing paused (a paused partition is left
    out of the held fetch, and once resumed it would wait for that fetch to end).
    """

    def __init__(self, consumer: AIOKafkaConsumer, *, shape: FetchShape = AT_ONCE,
                 idle_ms: int = IDLE_FETCH_WAIT_MS, idle_after: float = IDLE_AFTER_SECONDS) -> None:
        self.consumer = consumer
        self.busy = shape
        self.idle_ms = idle_ms
        self.idle_after = idle_after
        self._last_records = time.monotonic()
        self.idle = False

    @property
    def busy_ms(self) -> int:
        return self.busy.wait_ms

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
                self._set(self.busy)
                self.idle = False
        elif not self.idle and now - self._last_records >= self.idle_after:
            self._set(FetchShape(1, self.idle_ms))  # held long, answered at the first byte
            self.idle = True

    def _set(self, shape: FetchShape) -> None:
        fetcher = getattr(self.consumer, "_fetcher", None)  # created by start(); pinned aiokafka (constraints.txt)
        if fetcher is not None:
            fetcher._fetch_max_wait_ms = shape.wait_ms
            fetcher._fetch_min_bytes = shape.min_bytes
