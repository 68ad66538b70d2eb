"""An idempotent, acks=all Kafka producer on librdkafka (`confluent-kafka`) for asyncio code.

Who uses it: the handlers' runtime (step results, dead letters), the action handler's payment gateway
(payment commands) and the payment simulator (payment results). Not the engine: its transactional
producers are `streams/`'s own.

Why not aiokafka here (issue 15): at moderate load a handler's CPU was what its Kafka requests cost, and
aiokafka builds every produce request, parses every response and runs its sender task in Python on the
process's event loop. librdkafka does all of that in C on its own threads; what is left on the loop is
`produce()` (a copy into librdkafka's queue) and one `call_soon_threadsafe` per delivery report.

The guarantees stay those of aiokafka's `enable_idempotence=True`: acks=all, the idempotent producer
(no duplicate and no reordering from its own retries), and a record's future is settled only by its
delivery report. The partitioner is `murmur2_random`: for a keyed record it is the Java client's and
aiokafka's murmur2 placement, so an instance's results land on the same partition as before.

Delivery reports are served by `poll()` on a thread of this class (librdkafka calls the callback inside
`poll`); the callback hands the outcome to the event loop. The thread sleeps in `poll` until a report is
there, so an idle producer wakes only at the poll timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from typing import Any, NamedTuple

from confluent_kafka import KafkaError, KafkaException, Producer

log = logging.getLogger(__name__)

# How long librdkafka may keep retrying a record before its delivery fails (`message.timeout.ms`): the
# same bound as aiokafka's request timeout, so a caller that retries an outage (the handlers' runtime)
# gets its TimeoutError-like failure at the same moment as before instead of after librdkafka's 5 minutes.
DELIVERY_TIMEOUT_MS = 40_000
POLL_SECONDS = 1.0  # the delivery thread's sleep when nothing is being delivered (it wakes at once otherwise)

# librdkafka's local error codes that say "the broker is unreachable or slow", not "this record is wrong".
_TRANSIENT_CODES = frozenset({
    KafkaError._MSG_TIMED_OUT, KafkaError._TIMED_OUT, KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN,
    KafkaError._QUEUE_FULL, KafkaError._RESOLVE, KafkaError._WAIT_COORD, KafkaError._UNKNOWN_PARTITION,
    KafkaError.NOT_ENOUGH_REPLICAS, KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND, KafkaError.REQUEST_TIMED_OUT,
    KafkaError.LEADER_NOT_AVAILABLE, KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.NETWORK_EXCEPTION,
})


class ProduceError(Exception):
    """A record librdkafka did not deliver. `transient`: an outage (send it again later); otherwise the
    record itself was refused (too large, no such topic, ...) and sending it again cannot help."""

    def __init__(self, error: KafkaError) -> None:
        self.error = error
        self.transient = bool(error.retriable()) or error.code() in _TRANSIENT_CODES
        super().__init__(f"{error.name()}: {error.str()}")


class Delivered(NamedTuple):
    topic: str
    partition: int
    offset: int


class AsyncProducer:
    """`send`/`send_and_wait` like aiokafka's producer, on librdkafka."""

    def __init__(self, bootstrap_servers: str, *, linger_ms: int = 0, client_id: str = "flowline",
                 **config: Any) -> None:
        self._config = {
            "bootstrap.servers": bootstrap_servers, "client.id": client_id, "enable.idempotence": True,
            "acks": "all", "linger.ms": linger_ms, "partitioner": "murmur2_random",
            "message.timeout.ms": DELIVERY_TIMEOUT_MS, **config,
        }
        self._producer: Producer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._running = False

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._producer = Producer(self._config, logger=log)
        self._running = True
        self._thread = threading.Thread(target=self._serve, name="flowline-producer-poll", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        producer = self._producer
        assert producer is not None
        while self._running:
            producer.poll(POLL_SECONDS)

    async def stop(self, timeout: float = 10.0) -> None:
        """Deliver what is queued (up to `timeout`), then stop the delivery thread."""
        producer, thread = self._producer, self._thread
        if producer is None or thread is None:
            return
        await asyncio.to_thread(producer.flush, timeout)
        self._running = False
        await asyncio.to_thread(thread.join)
        self._producer = self._thread = None

    async def send(self, topic: str, value: bytes | None, *, key: bytes | None = None,
                   partition: int | None = None) -> asyncio.Future[Delivered]:
        """Queue one record; the returned future is settled by its delivery report (acks=all)."""
        producer, loop = self._producer, self._loop
        assert producer is not None and loop is not None, "start() the producer first"
        future: asyncio.Future[Delivered] = loop.create_future()

        def delivered(error: KafkaError | None, message: Any) -> None:  # on the delivery thread
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
                loop.call_soon_threadsafe(_settle, future, error, message)

        extra = {} if partition is None else {"partition": partition}
        while True:
            try:
                producer.produce(topic, value, key, on_delivery=delivered, **extra)
                return future
            except BufferError:  # librdkafka's queue is full: let deliveries drain it
                await asyncio.sleep(0.01)
            except KafkaException as exc:  # refused locally (too large, unknown topic, fatal)
                raise ProduceError(exc.args[0]) from exc

    async def send_and_wait(self, topic: str, value: bytes | None, *, key: bytes | None = None,
                            partition: int | None = None) -> Delivered:
        return await (await self.send(topic, value, key=key, partition=partition))


def _settle(future: asyncio.Future[Delivered], error: KafkaError | None, message: Any) -> None:
    if future.done():  # the caller gave up (cancelled)
        return
    if error is not None:
        future.set_exception(ProduceError(error))
    else:
        future.set_result(Delivered(message.topic(), message.partition(), message.offset()))
