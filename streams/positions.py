"""Where an engine worker starts reading a trigger partition it takes: the upgrade rule of docs/adr/0014.

Two consumer groups of the engine may read a trigger topic: the matcher's (`<app>-matcher`, the path
through `workflow.commands`) and the processor's (`<app>-processor`, starts decided inline). Which one does
depends on the version and on `FLOWLINE_ENGINE_INLINE_START`, so when it changes, the group that takes a
trigger partition over finds the other group's committed offset ahead of its own, or has none. Starting it
from its own offset or from the earliest would match every event the other group already matched once
more, under other instance ids when the id depends on the partition (an inline start's does): a second
instance of every old transfer. Starting it from the latest would skip the events between the other group's
last commit and now. So a worker that takes a trigger partition starts it from the later of the two groups'
committed offsets; when neither group has one, from the group's `fallback` ("latest" for the processor, as
the upgrade rule says; the matcher keeps "earliest", today's, whose ids do not depend on the partition so a
replay only meets the core's duplicate check). A position it chose this way is committed for its own group
at once: a worker restarted before the partition's first event must not fall back again and skip what
arrived meanwhile.

Both groups are never meant to read one topic at the same time: every engine of an installation runs one
version with one setting (upgrade: stop them all, start the new ones; ADR 14).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata

if TYPE_CHECKING:
    from streams.transactional import TransactionalWorker

log = logging.getLogger(__name__)


class StartPositions:
    def __init__(self, *, bootstrap_servers: str, topics: frozenset[str], group: str, other_group: str,
                 fallback: str, co_partitioned: bool = False) -> None:
        if fallback not in ("earliest", "latest"):
            raise ValueError(f"fallback must be earliest or latest, not {fallback!r}")
        self.bootstrap_servers = bootstrap_servers
        self.topics = topics  # the trigger topics (prefixed names) this worker consumes
        self.group = group
        self.other_group = other_group
        self.fallback = fallback
        self.co_partitioned = co_partitioned  # every topic of the group has one count (the processor's)
        self.worker: TransactionalWorker | None = None  # set by the engine once the worker exists

    async def place(self, partitions: set[int]) -> dict[TopicPartition, int]:
        """Seek each newly assigned trigger partition to where this worker must start it (see the module's
        docstring) and commit that for the group; returns what it moved. Runs inside the rebalance
        callback, before anything is fetched for the partitions."""
        consumer = self.worker.consumer if self.worker is not None else None
        if consumer is None or not self.topics:
            return {}
        assignment = consumer.assignment()
        if self.co_partitioned:
            _check_aligned(assignment, self.group)
        tps = sorted((tp for tp in assignment if tp.topic in self.topics and tp.partition in partitions),
                     key=lambda tp: (tp.topic, tp.partition))
        if not tps:
            return {}
        own, other = await self._committed(tps)
        for tp, stored in self._stored(tps).items():
            if own.get(tp) is None or stored > own[tp]:
                own[tp] = stored  # the changelog's offsets are this group's truth (ADR 13); the group's may lag
        moves: dict[TopicPartition, int] = {}
        to_end: list[TopicPartition] = []
        for tp in tps:
            mine, theirs = own.get(tp), other.get(tp)
            if theirs is not None and (mine is None or theirs > mine):
                moves[tp] = theirs
            elif mine is None and theirs is None and self.fallback == "latest":
                to_end.append(tp)
        if to_end:
            moves.update(await consumer.end_offsets(to_end))
        if not moves:
            return {}
        for tp, offset in moves.items():
            consumer.seek(tp, offset)
        await consumer.commit({tp: OffsetAndMetadata(offset, "") for tp, offset in moves.items()})
        log.info("%s starts trigger partitions at %s (the later of its and %s's committed offsets, else the %s)",
                 self.group, ", ".join(f"{tp.topic}/{tp.partition}@{offset}" for tp, offset in moves.items()),
                 self.other_group, self.fallback)
        return moves


    def _stored(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        """The consumed offsets the partitions' stores hold (the processor's changelog, ADR 13), which lead the
        group's committed ones by up to a second: a worker killed before its first group commit must not
        find "no offset" and fall back to the end, skipping what came after its last transaction."""
        worker = self.worker
        read = getattr(worker.logic, "stored_offsets", None) if worker and worker.offsets_in_changelog else None
        if read is None:
            return {}
        found: dict[TopicPartition, int] = {}
        for partition in {tp.partition for tp in tps}:
            for (topic, number), offset in read(partition).items():
                tp = TopicPartition(topic, number)
                if tp in tps:
                    found[tp] = offset
        return found

    async def _committed(self, tps: list[TopicPartition]) -> tuple[dict[TopicPartition, int],
                                                                   dict[TopicPartition, int]]:
        """Both groups' committed offsets of `tps`. A broker that does not answer is waited out (retried with
        backoff), never guessed around: a partition started from a guess could start old events again."""
        backoff = 0.2
        while True:
            admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap_servers)
            try:
                await asyncio.wait_for(admin.start(), 30)
                own = await asyncio.wait_for(admin.list_consumer_group_offsets(self.group, partitions=tps), 30)
                other = await asyncio.wait_for(admin.list_consumer_group_offsets(self.other_group, partitions=tps),
                                               30)
                return _known(own), _known(other)
            except (KafkaError, OSError, TimeoutError) as exc:
                log.warning("%s: the committed offsets of its trigger partitions are not readable yet (%r); "
                            "retrying in %.1f s", self.group, exc, backoff)
            finally:
                with contextlib.suppress(Exception):
                    await admin.close()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)


def _check_aligned(assignment: set[TopicPartition], group: str) -> None:
    """Say so loudly when this worker got partition p of one topic but not of another it subscribes: a member
    of the group subscribes other topics (another version, or another FLOWLINE_ENGINE_INLINE_START), and
    partition p's trigger events are no longer where p's state is (ADR 14: stop every engine, then start
    them all with one version and one setting)."""
    by_topic: dict[str, set[int]] = {}
    for tp in assignment:
        by_topic.setdefault(tp.topic, set()).add(tp.partition)
    if len({frozenset(found) for found in by_topic.values()}) > 1:
        log.error("%s: this worker's partitions differ between topics (%s): the engines of this group do not "
                  "all subscribe the same topics; run every engine with one version and one "
                  "FLOWLINE_ENGINE_INLINE_START (docs/adr/0014)", group,
                  "; ".join(f"{topic} {sorted(found)}" for topic, found in sorted(by_topic.items())))


def _known(found: dict[TopicPartition, OffsetAndMetadata]) -> dict[TopicPartition, int]:
    """The committed offsets that exist (the broker answers -1 for a partition the group never committed)."""
    return {tp: meta.offset for tp, meta in found.items() if meta is not None and meta.offset >= 0}
