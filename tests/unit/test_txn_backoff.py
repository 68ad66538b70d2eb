"""The first AddPartitionsToTxn of a transaction is sent again soon after CONCURRENT_TRANSACTIONS.

`streams.transactional` wraps aiokafka's answer handler so that its wait for that answer (a fixed 20 ms in
aiokafka 0.14) starts at `FIRST_ADD_PARTITIONS_RETRY_S` and doubles with each refusal in a row, up to 20 ms.
These tests run aiokafka's own handler, wrapped, on the answers the broker gives, so they fail if the wrapper
is gone or aiokafka changes its rule.
"""

from __future__ import annotations

from types import SimpleNamespace

from aiokafka.errors import ConcurrentTransactions, NoError
from aiokafka.producer.sender import AddPartitionsToTxnHandler
from aiokafka.structs import TopicPartition

from streams import metrics
from streams.transactional import FIRST_ADD_PARTITIONS_RETRY_MAX_S, FIRST_ADD_PARTITIONS_RETRY_S

RETRY_BACKOFF_S = 0.005  # the engine producers' retry_backoff_ms
EVENTS = TopicPartition("workflow.events", 0)


def _txn(already_added: set[TopicPartition] = frozenset()) -> SimpleNamespace:
    txn = SimpleNamespace(txn_partitions=set(already_added), added=[])
    txn.partition_added = txn.added.append
    return txn


def _handler(txn: SimpleNamespace) -> AddPartitionsToTxnHandler:
    return AddPartitionsToTxnHandler(SimpleNamespace(_retry_backoff=RETRY_BACKOFF_S, _txn_manager=txn), [EVENTS])


def _answer(error) -> SimpleNamespace:
    return SimpleNamespace(errors=[(EVENTS.topic, [(EVENTS.partition, error.errno)])])


def test_a_transactions_first_add_partitions_is_retried_after_the_short_wait():
    assert FIRST_ADD_PARTITIONS_RETRY_S < 0.02  # shorter than aiokafka's own 20 ms
    assert _handler(_txn()).handle_response(_answer(ConcurrentTransactions)) == FIRST_ADD_PARTITIONS_RETRY_S


def test_refusals_in_a_row_double_the_wait_up_to_aiokafkas_own():
    txn = _txn()
    counted = metrics.TXN_BUSY_REFUSALS._value.get()
    waits = [_handler(txn).handle_response(_answer(ConcurrentTransactions)) for _ in range(7)]
    assert waits == [0.002, 0.004, 0.008, 0.016, 0.02, 0.02, 0.02]
    assert metrics.TXN_BUSY_REFUSALS._value.get() == counted + 7  # SREs see them on /metrics
    assert FIRST_ADD_PARTITIONS_RETRY_MAX_S == 0.02


def test_an_accepted_add_partitions_starts_the_next_refusal_at_the_short_wait_again():
    txn = _txn()
    for _ in range(3):
        _handler(txn).handle_response(_answer(ConcurrentTransactions))
    assert _handler(txn).handle_response(_answer(NoError)) is None
    assert txn.added == [EVENTS]
    txn.txn_partitions.clear()  # the next transaction
    assert _handler(txn).handle_response(_answer(ConcurrentTransactions)) == FIRST_ADD_PARTITIONS_RETRY_S


def test_a_later_add_partitions_keeps_the_producers_retry_backoff():
    txn = _txn({TopicPartition("workflow.changelog", 0)})
    assert _handler(txn).handle_response(_answer(ConcurrentTransactions)) == RETRY_BACKOFF_S
