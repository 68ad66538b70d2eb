"""Read a (compacted) topic up to given end offsets: the one loop the template catalog and the engine's state
restore share (issue 11: each had its own, with its own way to decide it was done).

Why a loop of its own: "the end" of a read_committed partition is its last stable offset, and the position
can pass it in steps of whole batches, or jump over transaction markers, so "done" is `position >= end`
per partition, checked after each fetch; a partition already at its end is not fetched at all (an empty
compacted partition would otherwise hold every fetch for its long-poll wait); and a long read yields to the
event loop after every batch, so that a group heartbeat on the same loop never starves.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

from aiokafka import AIOKafkaConsumer, TopicPartition

Handler = Callable[[TopicPartition, list], Awaitable[None] | None]


async def read_to_end(consumer: AIOKafkaConsumer, ends: Mapping[TopicPartition, int], handle: Handler, *,
                      max_records: int = 5_000, timeout_ms: int = 200) -> int:
    """Fetch from the consumer's current positions until every partition in `ends` has reached its end
    offset, handing each fetched batch to `handle(tp, records)`; returns the number of records read."""
    pending = {tp for tp, end in ends.items() if await consumer.position(tp) < end}
    read = 0
    while pending:
        batches = await consumer.getmany(*pending, timeout_ms=timeout_ms, max_records=max_records)
        for tp, records in batches.items():
            read += len(records)
            result = handle(tp, records)
            if result is not None:
                await result
            await asyncio.sleep(0)
        for tp in list(pending):
            if await consumer.position(tp) >= ends[tp]:
                pending.discard(tp)
    return read
