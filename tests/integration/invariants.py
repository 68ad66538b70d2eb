"""The invariant checker fault tests end with (issue 9, "Suites that keep them found").

It reads `workflow.events` the way a downstream consumer does (`isolation_level=read_committed`, from
the beginning, independent of any harness) and, optionally, the payment simulator's ledger, and reports
every violation of:
- each instance's events carry a gap-free sequence 1..n with no duplicate;
- each instance has exactly one `InstanceStarted` and at most one terminal event, and nothing after it;
  each instance the test expects to have finished has exactly one;
- each payment (idempotency key in the ledger) was executed once.
A test asserts `check(...) == []`, so the message lists every violation at once.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer

from core import events as ev
from deploy import topics
from schemas.codec import Codec

TERMINAL = (ev.InstanceCompleted, ev.InstanceFailed, ev.InstanceCancelled)


async def read_events(bootstrap: str, prefix: str = "", *, settle: float = 1.0) -> dict[str, list[ev.Event]]:
    """Every committed event on `workflow.events`, per instance, read to the end (and `settle` s beyond)."""
    codec = Codec()
    topic = prefix + topics.WORKFLOW_EVENTS
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, isolation_level="read_committed",
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    found: dict[str, list[ev.Event]] = defaultdict(list)
    try:
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < settle:
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                quiet_since = time.monotonic()
                for record in records:
                    event = codec.decode(record.value)
                    found[event.instance_id].append(event)
    finally:
        await consumer.stop()
    return found


def check(events: dict[str, list[ev.Event]], *, finished: Iterable[str] = (),
          ledger: Iterable[dict] = ()) -> list[str]:
    problems: list[str] = []
    for instance_id, log in events.items():
        sequenced = [e for e in log if not isinstance(e, ev.CommandRejected)]  # rejections carry seq 0
        seqs = [e.seq for e in sequenced]
        if seqs != list(range(1, len(seqs) + 1)):
            problems.append(f"{instance_id}: sequence {seqs[:20]}{'...' if len(seqs) > 20 else ''} is not 1..n")
        kinds = Counter(type(e).__name__ for e in sequenced)
        if kinds["InstanceStarted"] != 1:
            problems.append(f"{instance_id}: {kinds['InstanceStarted']} InstanceStarted events")
        terminals = [i for i, e in enumerate(sequenced) if isinstance(e, TERMINAL)]
        if len(terminals) > 1:
            problems.append(f"{instance_id}: {len(terminals)} terminal events")
        if terminals and terminals[0] != len(sequenced) - 1:
            problems.append(f"{instance_id}: events after its terminal event")
    for instance_id in finished:
        if not any(isinstance(e, TERMINAL) for e in events.get(instance_id, ())):
            problems.append(f"{instance_id}: expected to have finished, but has no terminal event")
    executed = Counter(entry["idempotency_key"] for entry in ledger)
    problems += [f"payment {key} executed {n} times" for key, n in executed.items() if n > 1]
    return problems
