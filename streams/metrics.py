"""Prometheus metrics of the engine processes."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECORDS = Counter("flowline_engine_records_total", "Records consumed and committed", ["role"])
BATCH_SECONDS = Histogram("flowline_engine_batch_seconds", "Time to process and commit one batch", ["role"],
                          buckets=(0.002, 0.005, 0.01, 0.02, 0.04, 0.06, 0.1, 0.25, 0.5, 1, 2.5))
TRANSACTION_FAILURES = Counter("flowline_engine_transaction_failures_total", "Aborted transactions", ["role"])
OWNED_PARTITIONS = Gauge("flowline_engine_owned_partitions", "Partitions this worker owns", ["role"])
DECISIONS = Counter("flowline_engine_decisions_total", "Commands decided", ["command", "outcome"])
DLQ_RECORDS = Counter("flowline_engine_dlq_total", "Records sent to the dead-letter topic", ["role", "reason"])
INSTANCES = Gauge("flowline_engine_instances", "Decoded instance states held in memory (the stores' caches)")
TIMERS_FIRED = Counter("flowline_engine_timers_fired_total", "FireTimer commands sent by the sweep")
RESTORED = Counter("flowline_engine_restored_instances_total", "Changelog records read into local state stores")
RESTORE_RECORDS = Counter("flowline_engine_restore_records_total",
                          "Changelog records read into local state stores, by kind (full, delta, standby)", ["kind"])
STARTS = Counter("flowline_engine_trigger_starts_total", "StartInstance commands sent by the trigger matcher")
EXPIRED = Counter("flowline_engine_expired_instances_total", "Finished instances forgotten after their retention")
CATALOG_SYNC_SECONDS = Histogram("flowline_engine_catalog_sync_seconds",
                                 "Time to make sure the template catalog has read the templates topic to its end",
                                 buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25))
CATALOG_REQUESTS = Counter("flowline_engine_catalog_requests_total",
                           "ListOffsets requests of those checks (the checks of one turn of the event loop share one)")
REUSED_PARTITIONS = Counter("flowline_engine_reused_partitions_total",
                            "Partitions taken with their local store current (only the changelog delta read)")
REVOCATIONS = Counter("flowline_engine_revocations_total", "Partitions revoked from this worker by a rebalance",
                      ["role"])
LOOP_LAG = Histogram("flowline_engine_loop_lag_seconds", "How late the event loop woke up (heartbeats share it)",
                     buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
TXN_BUSY_REFUSALS = Counter("flowline_engine_txn_busy_refusals_total",
                            "First AddPartitionsToTxn of a transaction refused with CONCURRENT_TRANSACTIONS (the "
                            "previous commit's markers not yet written); each is sent again after a short wait")
