"""Prometheus metrics of the handler processes (labelled by step kind, so in-process tests can run all four)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter("flowline_handler_requests_total", "Step requests consumed", ["kind"])
OUTCOMES = Counter("flowline_handler_outcomes_total", "Results reported, by outcome", ["kind", "outcome"])
LATENCY = Histogram("flowline_handler_latency_seconds", "Time from consuming a request to publishing its result",
                    ["kind"], buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
RETRIES = Counter("flowline_handler_retries_total",
                  "Requests that are retry attempts (attempt > 1), and publishes retried", ["kind", "what"])
IN_FLIGHT = Gauge("flowline_handler_in_flight", "Requests being handled now", ["kind"])
DLQ = Counter("flowline_handler_dlq_total", "Requests sent to the dead-letter topic", ["kind", "reason"])
PAYMENT_RESULTS_RELAYED = Counter("flowline_handler_payment_results_relayed_total",
                                  "Payment service answers to the engine's payment orders relayed to their instances")
DELIVERIES = Counter("flowline_handler_deliveries_total", "Webhooks and emails sent", ["channel", "result"])
