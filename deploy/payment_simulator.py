"""DEVELOPMENT TOOL, NOT A PAYMENT SERVICE: a stand-in for PayOS on the local stack.

`flowline payment-simulator` consumes `payments.commands` and answers each on `payments.results`, keyed by
the command's idempotency key, the way the real payment service is expected to behave:

- a key it has not seen is "executed" once: appended (and fsynced) to a JSON-lines ledger
  (`FLOWLINE_SIMULATOR_LEDGER`, default `<state dir>/payment-simulator.jsonl`) before the reply is sent;
- a key it has seen is answered with the first result again, executing nothing (also after a restart:
  the ledger is read back at start-up);
- it knows the transfers of the trigger topic `payments.transfers` (read from the beginning at start-up and
  then as they come) and answers `lookup_transfer` with a transfer's record (tenant, amount, currency, the
  payment key that executed it), executing nothing;
- `execute_transfer` pays only a transfer it knows, at its own amount, when the instance's facts the
  command carries (`params.expected`: core.payments.expected_facts) agree with its record, and each
  transfer once: a command with another key for an executed transfer fails with "transfer ... already
  executed by instance ..." (core/payments.py, the rule any real payment service must keep too). The check
  and the execution are one step, so the handler needs one round trip per payment, not a lookup first;
- `params.simulate_failure` makes a command fail with that reason (to exercise rejected payments);
- `FLOWLINE_SIMULATOR_DELAY_MS` delays the first reply, so tests can crash a handler between the
  execution and the result.

Offsets are committed after the replies, at most every half second (at-least-once); the ledger makes
that safe: a command delivered again is answered with its first result.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from core.payments import EXPECTED, LOOKUP_TRANSFER, TransferBook, paid_params
from schemas import topics
from schemas.codec import Codec, DecodeError
from schemas.consumers import IDLE_AFTER_SECONDS, IDLE_FETCH_WAIT_MS, POLL_MS, LongPoll, consumer_options
from schemas.process import run_process
from schemas.records import PaymentCommand, PaymentResult, TransferEvent
from schemas.settings import env, env_int, given

log = logging.getLogger("flowline.payment_simulator")

# Offsets are committed at most this often, not after every batch: at low load a batch is one payment, and
# an OffsetCommit round trip per payment was a share of the simulator's and the broker's CPU (issue 15).
COMMIT_SECONDS = 0.5


def default_ledger() -> Path:
    state = given("FLOWLINE_STATE_DIR") or str(Path(__file__).resolve().parent.parent / ".flowline" / "dev")
    return Path(state) / "payment-simulator.jsonl"


def read_ledger(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class PaymentSimulator:
    def __init__(self, *, bootstrap_servers: str, topic_prefix: str = "", ledger: Path | None = None,
                 delay_ms: int = 0, group_id: str | None = None, idle_fetch_ms: int = IDLE_FETCH_WAIT_MS,
                 idle_after: float = IDLE_AFTER_SECONDS) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.commands_topic = topic_prefix + topics.PAYMENTS_COMMANDS
        self.results_topic = topic_prefix + topics.PAYMENTS_RESULTS
        self.transfers_topic = topic_prefix + topics.PAYMENTS_TRANSFERS
        self.book = TransferBook()
        self._transfers: AIOKafkaConsumer | None = None
        self._transfers_poll: LongPoll | None = None
        self._transfers_read = asyncio.Event()  # set after each batch the transfers follower took
        self._follower: asyncio.Task | None = None
        self.idle_fetch_ms, self.idle_after = idle_fetch_ms, idle_after  # the consumers' LongPoll
        self.group_id = group_id or f"{topic_prefix}flowline-payment-simulator"
        self.ledger = ledger or default_ledger()
        self.delay_ms = delay_ms
        self.codec = Codec.from_env()
        self.results: dict[str, PaymentResult] = {}
        self.commands_seen = 0
        self.answered = 0
        self.duplicates = 0
        self.executed_now = 0  # commands the last batch executed (not answered from the ledger)
        self._stopping = asyncio.Event()
        self.ready = asyncio.Event()
        self._ledger_file: Any = None

    @classmethod
    def from_env(cls) -> PaymentSimulator:
        ledger = given("FLOWLINE_SIMULATOR_LEDGER")
        return cls(bootstrap_servers=env("FLOWLINE_KAFKA_BOOTSTRAP"),
                   topic_prefix=env("FLOWLINE_TOPIC_PREFIX"),
                   ledger=Path(ledger) if ledger else None,
                   delay_ms=env_int("FLOWLINE_SIMULATOR_DELAY_MS"))

    def _load(self) -> None:
        for entry in read_ledger(self.ledger):
            self.results[entry["idempotency_key"]] = PaymentResult(
                idempotency_key=entry["idempotency_key"], status=entry["status"], output=entry.get("output"),
                error=entry.get("error", ""), completed_at=entry["completed_at"])
            params = entry.get("params") or {}
            if entry.get("action") == "execute_transfer" and entry["status"] == "succeeded" \
                    and isinstance(params.get("transfer_id"), str):
                self.book.executed(params["transfer_id"], entry["idempotency_key"])

    def learn(self, value: bytes | None) -> None:
        """Remember a transfer from a trigger-topic record (anything that is not a transfer is ignored)."""
        from streams.matcher import InvalidInput, parse_transfer  # the engine's own reading of the topic

        try:
            event = parse_transfer(self.codec, value)
        except InvalidInput:
            return
        if isinstance(event, TransferEvent):
            self.book.learn(event.transfer_id, tenant_id=event.tenant_id, amount=event.amount,
                            currency=event.currency)

    async def _follow_transfers(self) -> None:
        """Take every transfer as soon as the consumer has fetched it, in a task of its own.

        Why not between commands, as before: records a consumer leaves in aiokafka's buffer for more than
        its prefetch backoff (100 ms) are left out of the next fetch, which then holds the other partitions
        at the broker (5 s once idle, ADR 15), and their partition is fetched again only when that fetch
        returns. The loop answering commands waits up to a second for the next one, so after an idle
        period a transfer could wait 5 s to be read, and its payment with it (issue 15)."""
        assert self._transfers_poll is not None
        while True:
            batches = await self._transfers_poll.getmany(timeout_ms=POLL_MS)
            for records in batches.values():
                for record in records:
                    self.learn(record.value)
            if batches:
                self._transfers_read.set()

    async def _catch_up(self) -> None:
        """Wait until the follower has read the transfers topic up to its end as of now."""
        consumer = self._transfers
        if consumer is None:
            return
        ends = await consumer.end_offsets(list(consumer.assignment()))
        while not all([await consumer.position(tp) >= end for tp, end in ends.items()]):
            self._transfers_read.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._transfers_read.wait(), 0.1)  # positions move with every batch

    def lookup(self, command: PaymentCommand) -> PaymentResult:
        params = command.params if isinstance(command.params, dict) else {}
        record = self.book.record(params.get("transfer_id"), command.tenant_id)
        now = int(time.time() * 1000)
        if record is None:
            return PaymentResult(idempotency_key=command.idempotency_key, status="failed", error="unknown transfer",
                                 completed_at=now)
        return PaymentResult(idempotency_key=command.idempotency_key, status="succeeded", output=record,
                             completed_at=now)

    def execute(self, command: PaymentCommand) -> PaymentResult:
        """Run a command once: record it in the ledger, return its result."""
        result, entry = self._run(command)
        self._record([entry])
        return result

    def _run(self, command: PaymentCommand) -> tuple[PaymentResult, dict[str, Any]]:
        """Execute a command in memory (the transfer book, the results by key); its ledger entry to write."""
        params = command.params if isinstance(command.params, dict) else {}
        now = int(time.time() * 1000)
        reason = params.get("simulate_failure")
        refusal = None
        if command.action == "execute_transfer":
            # one check, atomic with the execution: known, the instance's facts agree, not paid by another key
            refusal = self.book.execution_refusal(params.get("transfer_id"), command.tenant_id,
                                                  command.idempotency_key, params.get(EXPECTED))
            record = self.book.record(params.get("transfer_id"), command.tenant_id)
            params = paid_params(params, record) if record is not None else \
                {k: v for k, v in params.items() if k != EXPECTED}
        if refusal:
            result = PaymentResult(idempotency_key=command.idempotency_key, status="failed", error=refusal,
                                   completed_at=now)
        elif reason:
            result = PaymentResult(idempotency_key=command.idempotency_key, status="failed", error=str(reason),
                                   completed_at=now)
        else:
            simulated = command.action == "simulate_transfer"
            output = {"payment_id": "sim_" + hashlib.sha256(command.idempotency_key.encode()).hexdigest()[:16],
                      "action": command.action, "status": "simulated" if simulated else "executed",
                      "amount": params.get("amount"), "currency": params.get("currency"),
                      "transfer_id": params.get("transfer_id")}
            result = PaymentResult(idempotency_key=command.idempotency_key, status="succeeded", output=output,
                                   completed_at=now)
        entry = {"idempotency_key": command.idempotency_key, "action": command.action,
                 "tenant_id": command.tenant_id, "params": params, "status": result.status,
                 "output": result.output, "error": result.error, "completed_at": now}
        if command.action == "execute_transfer" and result.status == "succeeded":
            self.book.executed(params["transfer_id"], command.idempotency_key)
        self.results[command.idempotency_key] = result
        return result, entry

    def execute_all(self, commands: list[PaymentCommand]) -> list[PaymentResult]:
        """Run a batch of commands, each once, with ONE ledger write and fsync before any reply is sent.

        Why: an fsync per command serialised the simulator on the disk, and each reply waited for the one
        before it (issue 15). Group commit keeps the rule that matters (no reply before its execution is on
        disk) at one fsync per batch; a key repeated in the batch is executed once and answered twice."""
        entries: list[dict[str, Any]] = []
        answers = []
        for command in commands:
            known = self.results.get(command.idempotency_key)
            if known is not None:
                self.duplicates += 1
                log.info("duplicate command %s: answering with the first result", command.idempotency_key)
                answers.append(known)
            else:
                result, entry = self._run(command)
                answers.append(result)
                entries.append(entry)
        self._record(entries)
        self.executed_now = len(entries)
        return answers

    def _record(self, entries: list[dict[str, Any]]) -> None:
        """Append `entries` to the ledger and fsync it. The file stays open between batches (an open, a
        mkdir and a close per batch were a share of the simulator's CPU at low load, issue 15)."""
        if not entries:
            return
        if self._ledger_file is None:
            self.ledger.parent.mkdir(parents=True, exist_ok=True)
            self._ledger_file = self.ledger.open("a")
        f = self._ledger_file
        f.write("".join(json.dumps(entry) + "\n" for entry in entries))
        f.flush()
        os.fsync(f.fileno())

    def close_ledger(self) -> None:
        if self._ledger_file is not None:
            self._ledger_file.close()
            self._ledger_file = None

    async def run(self) -> None:
        self._load()
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap_servers, enable_idempotence=True)
        consumer = AIOKafkaConsumer(self.commands_topic, bootstrap_servers=self.bootstrap_servers,
                                    group_id=self.group_id, enable_auto_commit=False,
                                    isolation_level="read_committed", auto_offset_reset="earliest",
                                    **consumer_options())
        transfers = AIOKafkaConsumer(bootstrap_servers=self.bootstrap_servers, enable_auto_commit=False,
                                     isolation_level="read_committed", **consumer_options())
        await producer.start()
        await consumer.start()
        await transfers.start()
        partitions = await transfers._client.fetch_all_metadata()  # partitions_for_topic reads only a cache
        tps = [TopicPartition(self.transfers_topic, p)
               for p in sorted(partitions.partitions_for_topic(self.transfers_topic) or ())]
        if tps:  # no trigger topic (an installation without transfers): nothing to learn
            transfers.assign(tps)
            await transfers.seek_to_beginning(*tps)
            self._transfers = transfers
            self._transfers_poll = LongPoll(transfers, idle_ms=self.idle_fetch_ms, idle_after=self.idle_after)
            self._follower = asyncio.create_task(self._follow_transfers())
        await self._catch_up()
        self.ready.set()
        log.info("payment simulator (development tool) answering %s; ledger %s", self.commands_topic, self.ledger)
        answered_since_commit, last_commit = False, time.monotonic()
        poll = LongPoll(consumer, idle_ms=self.idle_fetch_ms, idle_after=self.idle_after)
        try:
            while not self._stopping.is_set():
                batches = await poll.getmany()
                records = [record for records in batches.values() for record in records]
                if records:
                    await self._answer_batch(producer, records)
                    answered_since_commit = True
                # every fetched command is answered by now; the offsets follow at most COMMIT_SECONDS later
                # (a redelivery after a crash is answered from the ledger, executing nothing)
                if answered_since_commit and time.monotonic() - last_commit >= COMMIT_SECONDS:
                    await consumer.commit()
                    answered_since_commit, last_commit = False, time.monotonic()
        finally:
            if self._follower is not None:
                self._follower.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._follower
            if answered_since_commit:
                with contextlib.suppress(Exception):
                    await consumer.commit()
            with contextlib.suppress(Exception):
                await transfers.stop()
            with contextlib.suppress(Exception):
                await consumer.stop()
            with contextlib.suppress(Exception):
                await producer.stop()
            self.close_ledger()

    async def _answer_batch(self, producer: AIOKafkaProducer, records: list[Any]) -> None:
        """Answer a fetched batch: decode, learn transfers that may be just behind once, execute the batch
        with one fsync, then send every reply at once and wait for all of them (acks=all) before the
        offsets are committed. A reply per round trip made 16 payments in flight wait for each other."""
        commands = []
        for record in records:
            try:
                commands.append(self.codec.decode(record.value, PaymentCommand))
            except DecodeError as exc:
                log.warning("ignoring undecodable payment command at offset %s: %s", record.offset, exc)
        self.commands_seen += len(commands)
        if any(self.book.record((c.params if isinstance(c.params, dict) else {}).get("transfer_id"), c.tenant_id)
               is None for c in commands if c.action in (LOOKUP_TRANSFER, "execute_transfer")):
            await self._catch_up()  # a transfer event may be just behind its command
        lookups = [c for c in commands if c.action == LOOKUP_TRANSFER]
        executes = [c for c in commands if c.action != LOOKUP_TRANSFER]
        answers = self.execute_all(executes)
        if self.delay_ms and self.executed_now:
            await asyncio.sleep(self.delay_ms / 1000)
        replies = [(c, self.lookup(c)) for c in lookups] + list(zip(executes, answers, strict=True))
        sent = [await producer.send(self.results_topic, self.codec.encode(result), key=c.idempotency_key.encode())
                for c, result in replies]
        await asyncio.gather(*sent)
        self.answered += len(replies)

    def stop(self) -> None:
        self._stopping.set()


def main() -> int:
    simulator = PaymentSimulator.from_env()
    return run_process(simulator.run, simulator.stop)


if __name__ == "__main__":
    raise SystemExit(main())
