"""The first AddPartitionsToTxn of a transaction is sent again soon after CONCURRENT_TRANSACTIONS.

`streams.transactional` sets aiokafka's wait for that answer (a fixed 20 ms in aiokafka 0.14) to
`FIRST_ADD_PARTITIONS_RETRY_S`. These tests run aiokafka's own handler on the answer the broker gives, so
they fail if aiokafka stops reading the value it is given (a renamed constant, a changed rule).
"""

from __future__ import annotations

from types import SimpleNamespace

from aiokafka.errors import ConcurrentTransactions, NoError
from aiokafka.producer.sender import AddPartitionsToTxnHandler
from aiokafka.structs import TopicPartition

from streams.transactional import FIRST_ADD_PARTITIONS_RETRY_S

RETRY_BACKOFF_S = 0.005  # the engine producers' retry_backoff_ms


def _handler(already_added: set[TopicPartition]) -> AddPartitionsToTxnHandler:
    txn_manager = SimpleNamespace(txn_partitions=set(already_added), added=[])
    txn_manager.partition_added = txn_manager.added.append
    sender = SimpleNamespace(_retry_backoff=RETRY_BACKOFF_S, _txn_manager=txn_manager)
    return AddPartitionsToTxnHandler(sender, [TopicPartition("workflow.events", 0)])


def _answer(error) -> SimpleNamespace:
    return SimpleNamespace(errors=[("workflow.events", [(0, error.errno)])])


def test_a_transactions_first_add_partitions_is_retried_after_the_short_wait():
    assert FIRST_ADD_PARTITIONS_RETRY_S < 0.02  # shorter than aiokafka's own 20 ms
    assert _handler(set()).handle_response(_answer(ConcurrentTransactions)) == FIRST_ADD_PARTITIONS_RETRY_S


def test_a_later_add_partitions_keeps_the_producers_retry_backoff():
    added = {TopicPartition("workflow.changelog", 0)}
    assert _handler(added).handle_response(_answer(ConcurrentTransactions)) == RETRY_BACKOFF_S


def test_an_accepted_add_partitions_is_not_retried():
    handler = _handler(set())
    assert handler.handle_response(_answer(NoError)) is None
    assert handler._sender._txn_manager.added == [TopicPartition("workflow.events", 0)]
