"""A tiny Faust app run as a worker subprocess by test_kafka_compat.py.

    python tests/integration/faust_eos_app.py worker -l info

Configured by env: FAUST_APP_ID, FAUST_BROKER, FAUST_IN_TOPIC, FAUST_OUT_TOPIC, FAUST_PARTITIONS,
FAUST_DATADIR. The agent counts records per key in a table (changelog on) and forwards each record.
"""

from __future__ import annotations

import os

import faust

PARTITIONS = int(os.environ.get("FAUST_PARTITIONS", "3"))

app = faust.App(
    os.environ["FAUST_APP_ID"],
    broker=f"kafka://{os.environ['FAUST_BROKER']}",
    # Faust's local table store; the table's changelog and every topic live on the real Kafka broker
    store="memory://",
    processing_guarantee="exactly_once",
    topic_partitions=PARTITIONS,
    topic_replication_factor=1,
    web_enabled=False,
    datadir=os.environ.get("FAUST_DATADIR", "/tmp/faust-eos-data"),
    consumer_auto_offset_reset="earliest",
)

source = app.topic(os.environ["FAUST_IN_TOPIC"], key_type=bytes, value_type=bytes,
                   key_serializer="raw", value_serializer="raw", partitions=PARTITIONS)
output = app.topic(os.environ["FAUST_OUT_TOPIC"], key_type=bytes, value_type=bytes,
                   key_serializer="raw", value_serializer="raw", partitions=PARTITIONS)
counts = app.Table("counts", default=int, partitions=PARTITIONS)


@app.agent(source)
async def count_and_forward(stream):
    async for event in stream.events():
        key = event.key.decode()
        counts[key] += 1
        await output.send(key=event.key, value=event.value + b"|" + str(counts[key]).encode())


if __name__ == "__main__":
    app.main()
