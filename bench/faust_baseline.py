"""Baseline for bench/engine_bench.py: the same core run by a Faust agent, as DESIGN.md first proposed.

One agent over the commands topic, a Faust table of encoded instance states (changelog on), the same
`decide`, events and step requests sent from inside the stream; exactly-once on. Configured by env:
BASELINE_APP_ID, BASELINE_BROKER, BASELINE_PREFIX, BASELINE_PARTITIONS.

    python bench/faust_baseline.py worker -l warn
"""

from __future__ import annotations

import base64
import os
import sys
import time

import faust

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.workloads import TEMPLATES
from core.decide import decide
from core.template import compile_template, parse_template
from schemas.codec import Codec

PARTITIONS = int(os.environ.get("BASELINE_PARTITIONS", "3"))
PREFIX = os.environ.get("BASELINE_PREFIX", "")
codec = Codec()
compiled = {(tid, 1): compile_template(parse_template(doc, template_id=tid, version=1, tenant_id="t1"))
            for tid, doc in TEMPLATES.items()}

app = faust.App(
    os.environ.get("BASELINE_APP_ID", "flowline-faust-baseline"),
    broker=f"kafka://{os.environ.get('BASELINE_BROKER', '127.0.0.1:29092')}",
    # Faust's local table store; the table's changelog and every topic live on the real Kafka broker
    store="memory://",
    processing_guarantee="exactly_once",
    topic_partitions=PARTITIONS,
    topic_replication_factor=1,
    web_enabled=False,
    consumer_auto_offset_reset="earliest",
    stream_buffer_maxsize=4096,
    broker_commit_every=1000,
    broker_commit_interval=float(os.environ.get("BASELINE_COMMIT_INTERVAL", "2.8")),
    producer_linger=0.005,
    datadir=f"/tmp/faust-baseline-{os.getpid()}",
)
raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw",
       "partitions": PARTITIONS}
# commands and handler results, like the Flowline processor (one agent, co-partitioned with the table)
commands = app.topic(PREFIX + "workflow.commands", PREFIX + "workflow.step-results", **raw)
events = app.topic(PREFIX + "workflow.events", **raw)
steps = {kind: app.topic(PREFIX + f"workflow.steps.{kind}", **raw) for kind in
         ("approval", "notification", "action", "external")}
# Faust tables take no raw serializer: states are stored as base64 text (a few µs per record)
instances = app.Table("instances", default=None, partitions=PARTITIONS, key_type=str, value_type=str)


@app.agent(commands)
async def instance_agent(stream):
    async for event in stream.events():
        command = codec.decode(event.value)
        raw_state = instances.get(command.instance_id)
        state = codec.decode(base64.b64decode(raw_state)) if raw_state else None
        template = compiled[(state.template_id, state.template_version) if state else
                            (command.template_id, command.template_version)]
        decision = decide(state, command, template, int(time.time() * 1000))
        if decision.state is not None:
            instances[command.instance_id] = base64.b64encode(codec.encode(decision.state)).decode()
        for e in decision.events:
            await events.send(key=event.key, value=codec.encode(e))
        for request in decision.effects:
            await steps[request.kind].send(key=event.key, value=codec.encode(request))


if __name__ == "__main__":
    app.main()
