"""Action handler: PayOS operations through a registry of action adapters (story 29.5).

The engine orders most payments itself (docs/adr/0023: a payment whose params name only `trigger`, `steps`
and `instance` is a `PaymentOrder` in the engine's transaction, and this process's relay,
handlers/payment_relay.py, reports the payment service's answers); the adapters below take the rest: a
payment whose params need a handler placeholder (`{{secrets.*}}`, `{{tenant.*}}`, `{{payos.*}}`), a request
written before that, lookups and HTTP calls.

- `execute_transfer`, `simulate_transfer`: publish a `PaymentCommand` to `payments.commands` whose
  idempotency key is the step request id, then await the `PaymentResult` with that key on
  `payments.results`. One shared consumer per process reads the results and completes the waiting
  call; a result that does not arrive within the timeout reports `failed` (retryable). The payment
  service drops a duplicate key and answers with its first result, so a request redelivered after a crash
  publishes the same command again and gets the same answer: the transfer runs once.
- `execute_transfer` sends ONE command that carries the instance's facts (`core.payments.expected_facts`:
  instance id, the trigger's and the params' transfer id, amount, currency); the payment service pays
  only its own record, at its amount, when those facts agree with it and no other instance executed it,
  and refuses atomically otherwise (one round trip, no lookup first: issue 15). `simulate_transfer`
  moves no money and is sent as it is.
- `lookup_transfer`: the payment system's record of a transfer as the step's output (route on verified
  facts: `steps.<key>.amount`).
- `http_request`: call a configured HTTP endpoint (`params.url`, `method`, `headers`, `body`) through the
  SSRF-guarded client; a 2xx succeeds, 408/429/5xx are retryable failures, other statuses are not.

Ports: `PaymentGateway` (Kafka, or a fake) and the HTTP client.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from core.commands import ReportStepResult
from core.effects import StepRequest
from core.payments import EXPECTED, LOOKUP_TRANSFER, TransferBook, expected_facts, paid_params
from handlers.external import encode_body, parse_body
from handlers.http import HttpError, SafeHttpClient
from handlers.rendering import MissingSecret, Renderer, redact
from handlers.results import failed, succeeded
from schemas.codec import Codec, DecodeError
from schemas.consumers import LongPoll, consumer_options
from schemas.records import PaymentCommand, PaymentResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ActionOutcome:
    ok: bool
    output: Any = None
    error: str = ""
    retryable: bool = True


Adapter = Callable[[StepRequest, Mapping[str, Any], float], Awaitable[ActionOutcome]]


# ------------------------------------------------------------------------------------------------ payments

class PaymentGateway(Protocol):
    async def submit(self, command: PaymentCommand, timeout: float) -> PaymentResult:
        """Send the command and return its result; raise TimeoutError if none arrives in time."""
        ...


@dataclass
class FakePaymentGateway:
    """A payment service in memory: knows `book`'s transfers, executes each key once (a duplicate gets the
    first result) and each transfer once (core/payments.py), answers lookups."""

    executed: dict[str, PaymentCommand] = field(default_factory=dict)
    results: dict[str, PaymentResult] = field(default_factory=dict)
    book: TransferBook = field(default_factory=TransferBook)
    submitted: int = 0
    silent: bool = False

    async def submit(self, command: PaymentCommand, timeout: float) -> PaymentResult:
        self.submitted += 1
        if self.silent:
            raise TimeoutError
        now = int(time.time() * 1000)
        params = command.params if isinstance(command.params, Mapping) else {}
        if command.action == LOOKUP_TRANSFER:
            record = self.book.record(params.get("transfer_id"), command.tenant_id)
            if record is None:
                return PaymentResult(idempotency_key=command.idempotency_key, status="failed",
                                     error="unknown transfer", completed_at=now)
            return PaymentResult(idempotency_key=command.idempotency_key, status="succeeded", output=record,
                                 completed_at=now)
        if command.idempotency_key not in self.results:
            if command.action == "execute_transfer":
                refusal = self.book.execution_refusal(params.get("transfer_id"), command.tenant_id,
                                                      command.idempotency_key, params.get(EXPECTED))
                if refusal:
                    return PaymentResult(idempotency_key=command.idempotency_key, status="failed", error=refusal,
                                         completed_at=now)
                params = paid_params(params, self.book.record(params["transfer_id"], command.tenant_id) or {})
                command = dataclasses.replace(command, params=params)
                self.book.executed(params["transfer_id"], command.idempotency_key)
            self.executed[command.idempotency_key] = command
            self.results[command.idempotency_key] = PaymentResult(
                idempotency_key=command.idempotency_key, status="succeeded",
                output={"payment_id": f"pay_{len(self.executed)}", "action": command.action,
                        "transfer_id": params.get("transfer_id"), "amount": params.get("amount")},
                completed_at=now)
        return self.results[command.idempotency_key]


class KafkaPaymentGateway:
    """Publishes commands and correlates results by idempotency key through one shared consumer.

    The consumer reads every partition of `payments.results` from the end as of its start (no group: each
    process must see all results). Its position is fixed before the first command goes out, so a result
    can never slip past between sending and listening. It starts with the first command this process sends,
    not before: most payments are the engine's own orders now (docs/adr/0023), whose answers the relay takes,
    and a listener that never has a waiter would only fetch every answer a second time.
    """

    def __init__(self, *, bootstrap_servers: str, commands_topic: str, results_topic: str,
                 codec: Codec | None = None, producer: AIOKafkaProducer | None = None) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.commands_topic = commands_topic
        self.results_topic = results_topic
        self.codec = codec or Codec.from_env()
        self._producer = producer
        self._own_producer = producer is None
        self._consumer: AIOKafkaConsumer | None = None
        self._waiters: dict[str, list[asyncio.Future[PaymentResult]]] = {}
        self._task: asyncio.Task | None = None
        self._listening = asyncio.Lock()

    async def start(self) -> None:
        if self._producer is None:
            self._producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap_servers, enable_idempotence=True)
            await self._producer.start()
        cluster = await self._producer.client.fetch_all_metadata()
        if not cluster.partitions_for_topic(self.results_topic):
            raise RuntimeError(f"topic {self.results_topic} does not exist")

    async def _listen_from_now(self) -> None:
        """Start the listener, once, its position at the end as of now (before the caller's command goes out)."""
        async with self._listening:
            if self._consumer is not None:
                return
            await self._start_listener()

    async def _start_listener(self) -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap_servers, enable_auto_commit=False,
                                    isolation_level="read_committed", auto_offset_reset="latest",
                                    **consumer_options())
        await consumer.start()
        cluster = await consumer._client.fetch_all_metadata()  # partitions_for_topic reads only a cache
        partitions = cluster.partitions_for_topic(self.results_topic)
        if not partitions:
            await consumer.stop()
            raise RuntimeError(f"topic {self.results_topic} does not exist")
        tps = [TopicPartition(self.results_topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        for tp in tps:
            await consumer.position(tp)  # resolve "end" now, before any command is sent
        self._consumer = consumer
        self._task = asyncio.create_task(self._listen())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()
        if self._own_producer and self._producer is not None:
            await self._producer.stop()

    async def _listen(self) -> None:
        assert self._consumer is not None
        poll = LongPoll(self._consumer)
        while True:
            batches = await poll.getmany()
            for records in batches.values():
                for record in records:
                    try:
                        result = self.codec.decode(record.value, PaymentResult)
                    except DecodeError:
                        log.warning("undecodable payment result at offset %s ignored", record.offset)
                        continue
                    for future in self._waiters.pop(result.idempotency_key, []):
                        if not future.done():
                            future.set_result(result)

    async def submit(self, command: PaymentCommand, timeout: float) -> PaymentResult:
        assert self._producer is not None, "start() the gateway first"
        await self._listen_from_now()
        future: asyncio.Future[PaymentResult] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(command.idempotency_key, []).append(future)
        try:
            await self._producer.send_and_wait(self.commands_topic, self.codec.encode(command),
                                               key=command.idempotency_key.encode())
            return await asyncio.wait_for(future, timeout)
        finally:
            waiting = self._waiters.get(command.idempotency_key)
            if waiting and future in waiting:
                waiting.remove(future)
                if not waiting:
                    del self._waiters[command.idempotency_key]


def payment_adapter(gateway: PaymentGateway, action: str) -> Adapter:
    async def run(request: StepRequest, params: Mapping[str, Any], timeout: float) -> ActionOutcome:
        # stable across retries of the step (core/steps/action.py), so a slow success is never paid twice
        key = str((request.config or {}).get("operation_key") or request.request_id)
        params = dict(params)
        if action == "execute_transfer":
            transfer_id = params.get("transfer_id")
            if not isinstance(transfer_id, str) or not transfer_id:
                return ActionOutcome(False, error="execute_transfer needs params.transfer_id (the payment system's "
                                     "id)", retryable=False)
            # the requester's trigger may have stated any amount (docs/security.md): the payment service
            # compares these facts with its own record and pays that record, or refuses and pays nothing
            trigger = (request.context or {}).get("trigger") if isinstance(request.context, Mapping) else None
            params[EXPECTED] = expected_facts(trigger=trigger, params=params, instance_id=request.instance_id)
        command = PaymentCommand(idempotency_key=key, action=action, tenant_id=request.tenant_id,
                                 params=params, requested_at=int(time.time() * 1000))
        try:
            result = await gateway.submit(command, timeout)
        except TimeoutError:
            return ActionOutcome(False, error=f"no {action} result within {timeout:g} s", retryable=True)
        if result.status == "succeeded":
            return ActionOutcome(True, output=result.output)
        unpaid = "; nothing was paid" if action == "execute_transfer" else ""
        return ActionOutcome(False, error=f"{action} failed: {result.error or 'rejected by the payment service'}"
                                          f"{unpaid}", retryable=False)

    return run


def lookup_adapter(gateway: PaymentGateway) -> Adapter:
    """`lookup_transfer`: the payment system's record of `params.transfer_id` as the step's output, so a
    template can route on verified facts (`steps.<key>.amount`) instead of a requester's claim."""

    async def run(request: StepRequest, params: Mapping[str, Any], timeout: float) -> ActionOutcome:
        transfer_id = params.get("transfer_id")
        if not isinstance(transfer_id, str) or not transfer_id:
            return ActionOutcome(False, error="lookup_transfer needs params.transfer_id", retryable=False)
        command = PaymentCommand(idempotency_key=f"lookup:{request.request_id}:{uuid.uuid4().hex}",
                                 action=LOOKUP_TRANSFER, tenant_id=request.tenant_id,
                                 params={"transfer_id": transfer_id}, requested_at=int(time.time() * 1000))
        try:
            found = await gateway.submit(command, timeout)
        except TimeoutError:
            return ActionOutcome(False, error=f"no lookup_transfer result within {timeout:g} s", retryable=True)
        record = found.output if isinstance(found.output, Mapping) else None
        if found.status != "succeeded" or record is None \
                or record.get("tenant_id") not in ("", None, request.tenant_id):
            return ActionOutcome(False, error=f"transfer {transfer_id} is unknown to the payment system",
                                 retryable=False)
        return ActionOutcome(True, output=dict(record))

    return run


# ------------------------------------------------------------------------------------------------ http

def http_adapter(http: SafeHttpClient) -> Adapter:
    async def run(request: StepRequest, params: Mapping[str, Any], timeout: float) -> ActionOutcome:
        url = params.get("url")
        if not isinstance(url, str) or not url:
            return ActionOutcome(False, error="http_request needs params.url", retryable=False)
        method = str(params.get("method") or "POST").upper()
        body, content_type = encode_body(params.get("body"))
        headers = {str(k): str(v) for k, v in (params.get("headers") or {}).items()}
        if content_type:
            headers.setdefault("Content-Type", content_type)
        headers["Idempotency-Key"] = str((request.config or {}).get("operation_key") or request.request_id)
        try:
            exchange = await http.request(method, url, headers=headers, body=body, timeout=timeout)
        except HttpError as exc:
            return ActionOutcome(False, error=f"http_request: {exc}", retryable=exc.retryable)
        response = exchange.response
        output = {"status": response.status, "headers": dict(response.headers),
                  "body": parse_body(response.body, response.headers.get("content-type", ""))}
        if 200 <= response.status < 300:
            return ActionOutcome(True, output=output)
        return ActionOutcome(False, error=f"http_request answered HTTP {response.status}",
                             retryable=response.status >= 500 or response.status in (408, 429))

    return run


# ------------------------------------------------------------------------------------------------ handler

class ActionHandler:
    def __init__(self, adapters: Mapping[str, Adapter], renderer: Renderer, *,
                 default_timeout: float = 30.0) -> None:
        self.adapters = dict(adapters)
        self.renderer = renderer
        self.default_timeout = default_timeout

    async def handle(self, request: StepRequest) -> ReportStepResult:
        config = dict(request.config or {})
        action = str(config.get("action") or "")
        adapter = self.adapters.get(action)
        if adapter is None:
            return failed(request, f"unknown action {action!r}; available: {', '.join(sorted(self.adapters))}",
                          retryable=False)
        try:
            params, secrets = await self.renderer.render(request, config.get("params") or {})
        except MissingSecret as exc:
            return failed(request, str(exc), retryable=False)
        timeout = float(config.get("timeout_seconds") or self.default_timeout)
        outcome = await adapter(request, params, timeout)
        if outcome.ok:
            return succeeded(request, redact(outcome.output, secrets))
        return failed(request, redact(outcome.error, secrets), retryable=outcome.retryable)


def default_adapters(gateway: PaymentGateway, http: SafeHttpClient) -> dict[str, Adapter]:
    return {
        "execute_transfer": payment_adapter(gateway, "execute_transfer"),
        "simulate_transfer": payment_adapter(gateway, "simulate_transfer"),
        LOOKUP_TRANSFER: lookup_adapter(gateway),
        "http_request": http_adapter(http),
    }
