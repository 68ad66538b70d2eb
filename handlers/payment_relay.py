"""The payment results relay: each answer of the payment service to an engine's payment order, as the
`RecordPaymentResult` command of the instance it belongs to (docs/adr/0023).

The engine orders an action step's payment itself (`PaymentOrder` on `payments.commands`, keyed by the
visit's operation key `instance:step:v<visit>`); the payment service answers on `payments.results` under
that key, on whatever partition it chooses. The engine's input is keyed by instance, so something must
turn the one into the other: this relay, which runs in the action handler's process.

- At least once: a batch's commands are acknowledged by the broker before the batch's offsets are
  committed. A copy (a restart before the commit) carries the same command id (`payment:<key>`), which the
  engine drops; so does the second answer the service gives to a retried order of the same visit. That is
  also why the offsets are committed at most every `COMMIT_EVERY_S` (and when the relay goes idle), not
  after every batch: an OffsetCommit per batch was a request to the broker per few payments, and what a
  crash between two commits costs is copies the engine drops.
- A consumer group of its own: several action handler processes split the partitions, each answer is
  relayed by one. A new group starts at the beginning of the topic: nothing answered before the relay's
  first start is lost (answers for instances that are gone are refused by the engine, and say so).
- Only keys of the operation-key form are relayed; the action handler's own commands (`lookup:...`) are
  answered to the handler that waits for them (handlers/action.py), not here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from core.commands import RecordPaymentResult
from core.payments import operation_key_parts
from handlers import metrics
from schemas.codec import Codec, DecodeError
from schemas.consumers import LongPoll, consumer_options
from schemas.records import PaymentResult

log = logging.getLogger(__name__)

COMMIT_EVERY_S = 0.2


def command_for(result: PaymentResult) -> RecordPaymentResult | None:
    """The command that reports `result` to its instance, or None when its key is not an operation key."""
    parts = operation_key_parts(result.idempotency_key)
    if parts is None:
        return None
    instance_id, step = parts
    return RecordPaymentResult(command_id=f"payment:{result.idempotency_key}", instance_id=instance_id,
                               issued_at=int(time.time() * 1000), step=step, operation_key=result.idempotency_key,
                               status=result.status, output=result.output, error=result.error)


@dataclass
class RelayTopics:
    results: str  # payments.results (prefixed)
    commands: str  # where the engine takes results: workflow.step-results (prefixed)
    group_id: str


class PaymentResultRelay:
    def __init__(self, *, bootstrap_servers: str, topics: RelayTopics, codec: Codec | None = None,
                 session_timeout_ms: int = 10_000) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topics = topics
        self.codec = codec or Codec.from_env()
        self.session_timeout_ms = session_timeout_ms
        self.relayed = 0
        self.uncommitted = False  # relayed (and acknowledged) answers whose offsets are not committed yet
        self._task: asyncio.Task | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self.ready = asyncio.Event()

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap_servers, enable_idempotence=True,
                                          linger_ms=0)
        await self._producer.start()
        self._consumer = AIOKafkaConsumer(
            self.topics.results, bootstrap_servers=self.bootstrap_servers, group_id=self.topics.group_id,
            enable_auto_commit=False, isolation_level="read_committed", auto_offset_reset="earliest",
            session_timeout_ms=self.session_timeout_ms,
            heartbeat_interval_ms=max(self.session_timeout_ms // 5, 500), **consumer_options())
        await self._consumer.start()
        self._task = asyncio.create_task(self._run(), name="payment-relay")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                await self._consumer.stop()
        if self._producer is not None:
            with contextlib.suppress(Exception):
                await self._producer.stop()

    async def _run(self) -> None:
        assert self._consumer is not None and self._producer is not None
        poll = LongPoll(self._consumer)
        committed_at = time.monotonic()
        while True:
            batches = await poll.getmany()
            self.ready.set()
            if not batches:
                if self.uncommitted:  # idle: what was relayed is committed now
                    await self._consumer.commit()
                    self.uncommitted, committed_at = False, time.monotonic()
                continue
            sent = []
            for records in batches.values():
                for record in records:
                    try:
                        result = self.codec.decode(record.value, PaymentResult)
                    except DecodeError:
                        log.warning("undecodable payment result at %s@%s skipped", record.partition, record.offset)
                        continue
                    command = command_for(result)
                    if command is None:
                        continue
                    sent.append(await self._producer.send(self.topics.commands, self.codec.encode(command),
                                                          key=command.instance_id.encode()))
            await asyncio.gather(*sent)  # acknowledged (acks=all) before the offsets move on
            self.uncommitted = True
            if time.monotonic() - committed_at >= COMMIT_EVERY_S:
                await self._consumer.commit()
                self.uncommitted, committed_at = False, time.monotonic()
            self.relayed += len(sent)
            metrics.PAYMENT_RESULTS_RELAYED.inc(len(sent))
