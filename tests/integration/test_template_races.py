"""Issue 9.2: a template version is matched from the moment it was acknowledged (docs/adr/0007).

Each race publishes a template version the way the gateway does (acknowledged by the broker before the API
answers) and at once produces an event that only it matches: it must start an instance. Then it
deactivates the template (a new PAUSED version, as DELETE does) and at once produces another such event:
that one must start nothing. CI runs 100 races;
`FLOWLINE_RACES=1000` runs the long variant (see docs/performance.md).
"""

from __future__ import annotations

import json
import os

import pytest

from core import events as ev
from schemas import topics
from streams import metrics
from tests.integration.engine_harness import EngineWorld, event_instance_id

pytestmark = pytest.mark.asyncio(loop_scope="session")

RACES = int(os.environ.get("FLOWLINE_RACES", "100"))
PARTITIONS = 3


def template(n: int) -> dict:
    return {"name": f"Race {n}", "trigger_type": "on_transfer",
            "trigger_config": {"conditions": [{"field": "metadata.race", "op": "eq", "value": f"r{n}"}]},
            "steps": [{"type": "condition", "name": "Done", "config": {"expression": "true", "if_true": "complete"}}]}


def event(event_id: str, race: str) -> bytes:
    return json.dumps({"event_id": event_id, "tenant_id": "t1", "amount_minor": 100, "currency": "USD",
                       "metadata": {"race": race}}).encode()


def started(template_id: str, event_id: str) -> str:
    return event_instance_id(template_id, event_id, PARTITIONS, key="race")


async def test_create_then_send_and_deactivate_then_send_never_miss(kafka_bootstrap):
    async with EngineWorld(kafka_bootstrap, partitions=PARTITIONS) as world:
        engine = await world.start_engine()
        sum_before, count_before = metrics.CATALOG_SYNC_SECONDS._sum.get(), _count()
        missed = []
        for n in range(RACES):
            await world.publish_template(f"tpl_race_{n}", template(n))
            await world.send_raw(topics.PAYMENTS_TRANSFERS, event(f"evt_on_{n}", f"r{n}"), key=b"race")
            try:
                await world.wait_for_event(started(f"tpl_race_{n}", f"evt_on_{n}"), ev.InstanceStarted, timeout=10)
            except AssertionError:
                missed.append(n)
            await world.publish_template(f"tpl_race_{n}", template(n), version=2, status="PAUSED")
            await world.send_raw(topics.PAYMENTS_TRANSFERS, event(f"evt_off_{n}", f"r{n}"), key=b"race")
        # a last template and event on the same partition: once it started, every race before it was decided
        await world.publish_template("tpl_last", template(-1))
        await world.send_raw(topics.PAYMENTS_TRANSFERS, event("evt_last", "r-1"), key=b"race")
        await world.wait_for_event(started("tpl_last", "evt_last"), ev.InstanceStarted, timeout=120)
        await world.wait_until(lambda: all(
            any(isinstance(e, ev.InstanceCompleted) for e in world.events[started(f"tpl_race_{n}", f"evt_on_{n}")])
            for n in range(RACES) if n not in missed), timeout=120, message="every started race completed")
        wrongly = [n for n in range(RACES) if started(f"tpl_race_{n}", f"evt_off_{n}") in world.events]
        assert not missed, f"{len(missed)} of {RACES} new templates missed the event sent right after them"
        assert not wrongly, f"{len(wrongly)} of {RACES} deactivated templates still started an instance"
        assert not world.dlq
        seconds, count = metrics.CATALOG_SYNC_SECONDS._sum.get() - sum_before, _count() - count_before
        print(f"{RACES} races: {count} catalog syncs took {seconds:.3f} s ({seconds / count * 1000:.2f} ms each)")
        del engine


def _count() -> float:
    return sum(s.value for m in metrics.CATALOG_SYNC_SECONDS.collect() for s in m.samples if s.name.endswith("_count"))
