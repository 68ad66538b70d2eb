"""The one way every Flowline consumer builds a `workflow.dlq` record (engine, handlers, projector).

A dead letter carries the original bytes, so that an operator can inspect and replay it. But the original
may be the very reason it is being dead-lettered: a 350 KB key with a 650 KB value fits no Kafka record
of its own once wrapped, and a dead letter that cannot be written would stop its partition for good (or,
worse, be skipped). So a letter is bounded: when key, value and reason do not fit `MAX_LETTER_BYTES`,
the key and value are cut to fit and the reason says so, with the original sizes; the coordinates
(topic, partition, offset) always name where the whole record still is until its topic's retention.
"""

from __future__ import annotations

import time
from typing import Any

from schemas.records import DlqRecord

# Kafka's default max.message.bytes is 1 MiB; leave room for the Avro envelope and the record header.
MAX_LETTER_BYTES = 900_000
MAX_KEY_BYTES = 4_096  # a cut key keeps this much (keys are ids; a longer one is already suspicious)
MAX_REASON_CHARS = 4_000  # reasons are sentences; a 1.2 MB error text is cut


def letter(record: Any, reason: str, error_type: str, consumer: str, *,
           max_bytes: int = MAX_LETTER_BYTES) -> DlqRecord:
    """A `DlqRecord` for a consumed `record` (anything with topic, partition, offset, key, value)."""
    key: bytes | None = record.key
    value: bytes = record.value or b""
    if len(reason) > MAX_REASON_CHARS:
        reason = reason[:MAX_REASON_CHARS] + f"... ({len(reason)} characters in all)"
    key_size, value_size = len(key or b""), len(value)
    if key_size + value_size + len(reason.encode()) > max_bytes:
        if key is not None and key_size > MAX_KEY_BYTES:
            key = key[:MAX_KEY_BYTES]
        room = max(max_bytes - len(key or b"") - len(reason.encode()) - 300, 0)
        value = value[:room]
        reason = (f"{reason} [truncated: key {key_size} bytes, value {value_size} bytes; kept key "
                  f"{len(key or b'')} and value {len(value)} bytes; the whole record is at "
                  f"{record.topic}/{record.partition}@{record.offset}]")
    return DlqRecord(source_topic=record.topic, partition=record.partition, offset=record.offset, key=key,
                     value=value, reason=reason, error_type=error_type, failed_at=int(time.time() * 1000),
                     consumer=consumer)


def letter_key(record: Any) -> bytes | None:
    """The Kafka key of a dead letter: the original key, cut like the letter's own copy."""
    key = record.key
    return key[:MAX_KEY_BYTES] if key is not None and len(key) > MAX_KEY_BYTES else key
