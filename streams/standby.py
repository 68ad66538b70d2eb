"""Standby replicas: warm local copies of partitions this worker does not own (issue 9).

Why: when a worker dies, its partitions move to the survivors, which had to read those partitions' whole
changelog before they could go on (about 3,400 instances a second). A standby follows the changelog of a
few partitions it does not own (read_committed, like a restore) into their local stores, so the worker that
is assigned one after a failover reads only the last moments (`InstanceProcessor.catch_up` reads from the
store's offset). Like Kafka Streams' `num.standby.replicas`, without its assignor:

- which partitions: the engine's range assignment gives each worker one contiguous block of partitions, so
  a worker shadows the partitions right after its own block (wrapping around), as many as the next
  `FLOWLINE_ENGINE_STANDBY_REPLICAS` workers can hold (`standby_partitions`). With two workers each shadows
  the other's partitions; with more, each shadows the next worker's block (and with uneven blocks, at worst
  one partition more). It needs no coordination and no knowledge of the other members;
- a partition this worker loses in a rebalance stays as a standby while it is in that set, so a worker that
  gets it back reads only the delta;
- standby stores are never swept for timers and never written by decisions: only the changelog writes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas.consumers import TRAILING, LongPoll, consumer_options
from streams import metrics
from streams.state_store import DUE_HEADER, PartitionStore, Record

if TYPE_CHECKING:
    from streams.processor import InstanceProcessor

log = logging.getLogger(__name__)

VERIFY_EVERY_SECONDS = 60.0


def standby_partitions(owned: set[int], total: int, replicas: int) -> set[int]:
    """The partitions to shadow: the next `replicas` blocks after the owned ones, each as long as the largest
    block another worker can have. The range assignor gives W workers blocks of ceil(P/W) or floor(P/W)
    partitions; owning b of them means at least floor(P/(b+1))+1 workers, so no block is longer than
    ceil(P/that): shadowing that many partitions after one's own block covers the next worker's block,
    whatever the number of workers (at worst a partition more than needed)."""
    if not owned or replicas <= 0:
        return set()
    fewest_workers = total // (len(owned) + 1) + 1
    span = -(-total // fewest_workers)
    last = max(owned)
    return {(last + 1 + i) % total for i in range(span * replicas)} - owned


class Standby:
    def __init__(self, processor: InstanceProcessor) -> None:
        self.processor = processor
        self.stores: dict[int, PartitionStore] = {}
        self._task: asyncio.Task | None = None

    @property
    def partitions(self) -> set[int]:
        return set(self.stores)

    async def take(self, partitions: set[int]) -> dict[int, PartitionStore]:
        """Hand standby stores to their new owner (it reads the delta after each store's offset). Following
        stops first: a store has one writer at a time, or an old changelog batch could overwrite a newer
        state the owner committed."""
        await self._stop_task()
        return {p: self.stores.pop(p) for p in partitions if p in self.stores}

    def keep(self, partition: int, store: PartitionStore) -> None:
        """Keep a revoked partition's store as a standby (until `retarget` says otherwise)."""
        self.stores[partition] = store

    async def retarget(self, owned: set[int]) -> None:
        """Follow the partitions `standby_partitions` names for the current ownership; close the others."""
        settings = self.processor.settings
        wanted = standby_partitions(owned, settings.partitions, settings.standby_replicas)
        await self._stop_task()
        for partition in set(self.stores) - wanted:
            store = self.stores.pop(partition)
            store.verified()
            store.close()
        for partition in sorted(wanted - set(self.stores)):
            self.stores[partition] = self.processor.open_store(partition)
        if self.stores:
            self._task = asyncio.create_task(self._follow(dict(self.stores)), name="standby")
        log.info("standby partitions %s (owned %s)", sorted(self.stores), sorted(owned))

    async def _follow(self, stores: dict[int, PartitionStore]) -> None:
        try:
            await self.processor.catch_up(stores, kind_counter="standby")
            topic = self.processor.settings.changelog_topic
            consumer = AIOKafkaConsumer(bootstrap_servers=self.processor.settings.bootstrap_servers,
                                        enable_auto_commit=False, isolation_level="read_committed",
                                        auto_offset_reset="earliest", max_partition_fetch_bytes=4 * 1024 * 1024,
                                        # nothing waits for a standby: a takeover reads the rest itself
                                        **consumer_options(shape=TRAILING))
            await consumer.start()
            try:
                tps = {p: TopicPartition(topic, p) for p in stores}
                consumer.assign(list(tps.values()))
                for p, tp in tps.items():
                    consumer.seek(tp, stores[p].offset or 0)
                verified_at = time.monotonic()
                poll = LongPoll(consumer, shape=TRAILING)
                while True:
                    batches = await poll.getmany(timeout_ms=1_000, max_records=5_000)
                    for tp, records in batches.items():
                        store = self.stores.get(tp.partition)
                        if store is not stores.get(tp.partition):
                            continue  # handed to the owner meanwhile: only the owner writes it now
                        store.apply((Record(r.key, r.value, next((v for k, v in r.headers if k == DUE_HEADER),
                                                                   None)) for r in records),
                                    records[-1].offset + 1)
                        self.processor.restore_reads["standby"] = (self.processor.restore_reads.get("standby", 0)
                                                                   + len(records))
                        metrics.RESTORE_RECORDS.labels("standby").inc(len(records))
                    if not batches and time.monotonic() - verified_at > VERIFY_EVERY_SECONDS:
                        verified_at = time.monotonic()  # caught up: the stores are current as of now
                        for p, store in stores.items():
                            if self.stores.get(p) is store:
                                store.verified()
                    await asyncio.sleep(0)
            finally:
                await consumer.stop()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("following the standby partitions %s failed; they will be restored when assigned",
                          sorted(stores))

    async def _stop_task(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    async def close(self) -> None:
        await self._stop_task()
        for store in self.stores.values():
            store.verified()
            store.close()
        self.stores.clear()
