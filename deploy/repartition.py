"""Grow the partition count of a Flowline installation (the design's "planned migration").

An instance id must map to the partition that holds its state, and Kafka's default partitioner maps a key
to `murmur2(key) % partitions`: adding partitions moves instances. So the instance-keyed topics grow in
place (Kafka keeps their records; new records follow the new mapping), and the engine's state changelog is
rewritten so every state lands on its new partition. Run it with every engine, handler, gateway and matcher
stopped (docs/runbooks/repartitioning.md): it refuses to run while the engine's consumer group has members
or unprocessed commands.

    flowline repartition --partitions 12 [--yes]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic

from schemas import topics as topics_mod
from schemas.compacted import read_to_end
from schemas.settings import env
from streams.state_store import is_offsets
from streams.transactional import partition_for

# Topics keyed by instance id: they must all have the engine's partition count.
INSTANCE_KEYED = (topics_mod.WORKFLOW_COMMANDS, topics_mod.WORKFLOW_STEP_RESULTS, topics_mod.WORKFLOW_EVENTS,
                  *(topics_mod.step_topic(k) for k in topics_mod.STEP_KINDS))


class RepartitionError(RuntimeError):
    pass


@dataclass
class Plan:
    bootstrap: str
    prefix: str
    partitions: int
    engine_id: str = "flowline-engine"
    backup_dir: Path = Path(".flowline") / "repartition"
    from_backup: Path | None = None

    def topic(self, name: str) -> str:
        return self.prefix + name

    @property
    def changelog(self) -> str:
        return self.topic(topics_mod.ENGINE_INSTANCES_CHANGELOG)

    @property
    def processor_group(self) -> str:
        return f"{self.engine_id}-processor"


def say(message: str) -> None:
    print(f"repartition: {message}", flush=True)


async def _partition_counts(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, int]:
    described = await admin.describe_topics(names)
    return {d["topic"]: len(d["partitions"]) for d in described if not d.get("error_code")}


async def _check_idle(plan: Plan, admin: AIOKafkaAdminClient) -> None:
    groups = await admin.describe_consumer_groups([plan.processor_group])
    for group in groups:
        for entry in getattr(group, "groups", []) or []:
            state = entry[2]  # (error_code, group, state, protocol_type, protocol, members, ...)
            if state not in ("Empty", "Dead"):
                raise RepartitionError(f"consumer group {plan.processor_group} is {state}: stop every engine first")
    committed = await admin.list_consumer_group_offsets(plan.processor_group)
    consumer = AIOKafkaConsumer(bootstrap_servers=plan.bootstrap, isolation_level="read_committed")
    await consumer.start()
    try:
        tps = [tp for tp in committed if tp.topic in (plan.topic(topics_mod.WORKFLOW_COMMANDS),
                                                      plan.topic(topics_mod.WORKFLOW_STEP_RESULTS))]
        ends = await consumer.end_offsets(tps) if tps else {}
        behind = {str(tp): ends[tp] - committed[tp].offset for tp in tps if ends[tp] > committed[tp].offset}
    finally:
        await consumer.stop()
    if behind:
        raise RepartitionError(f"the engine has unprocessed commands/results {behind}: start the engine alone "
                               "(no gateway, matcher or handlers) until its lag is 0, stop it, then run this again")


async def _read_changelog(plan: Plan, partitions: int) -> dict[bytes, bytes]:
    tps = [TopicPartition(plan.changelog, p) for p in range(partitions)]
    consumer = AIOKafkaConsumer(bootstrap_servers=plan.bootstrap, isolation_level="read_committed",
                                enable_auto_commit=False)
    await consumer.start()
    latest: dict[bytes, bytes] = {}
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)

        def keep_latest(_: TopicPartition, records: list) -> None:
            for record in records:
                if is_offsets(record.key):
                    # a partition's consumed offsets (ADR 13), not an instance: the recreated changelog has
                    # none, so the engine resumes at the group's offsets, which `_check_idle` found at the end
                    continue
                if record.value is None:
                    latest.pop(record.key, None)
                else:
                    latest[record.key] = record.value

        await read_to_end(consumer, ends, keep_latest, max_records=10_000, timeout_ms=500)
    finally:
        await consumer.stop()
    return latest


def write_backup(plan: Plan, states: dict[bytes, bytes]) -> Path:
    plan.backup_dir.mkdir(parents=True, exist_ok=True)
    path = plan.backup_dir / f"changelog-{plan.prefix or 'default'}{int(time.time())}.jsonl"
    with path.open("w") as out:
        for key, value in states.items():
            out.write(json.dumps({"key": base64.b64encode(key).decode(), "value": base64.b64encode(value).decode()})
                      + "\n")
    return path


def read_backup(path: Path) -> dict[bytes, bytes]:
    states: dict[bytes, bytes] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            states[base64.b64decode(row["key"])] = base64.b64decode(row["value"])
    return states


async def repartition(plan: Plan, *, confirm: bool = True) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=plan.bootstrap)
    await admin.start()
    try:
        names = [plan.topic(t) for t in INSTANCE_KEYED] + [plan.changelog]
        counts = await _partition_counts(admin, names)
        missing = sorted(set(names) - set(counts))
        if missing:
            raise RepartitionError(f"topics missing: {', '.join(missing)}")
        current = counts[plan.changelog]
        if plan.partitions < max(counts.values()):
            raise RepartitionError(f"Kafka cannot shrink topics: they have up to {max(counts.values())} partitions, "
                                   f"asked for {plan.partitions}")
        if plan.partitions == current and all(c == current for c in counts.values()):
            say(f"every instance-keyed topic already has {current} partitions; nothing to do")
            return counts
        await _check_idle(plan, admin)
        if confirm:
            say(f"growing {len(names)} topics from {current} to {plan.partitions} partitions; type 'yes' to go on")
            if input().strip() != "yes":
                raise RepartitionError("not confirmed")
        if plan.from_backup is not None:
            states = read_backup(plan.from_backup)
            say(f"read {len(states)} instance states from the backup {plan.from_backup}")
        else:
            states = await _read_changelog(plan, current)
            say(f"read {len(states)} instance states from {plan.changelog}")
            backup = write_backup(plan, states)
            say(f"backed them up to {backup} (rerun with --from-backup {backup} if this run is interrupted)")
        grow = {name: NewPartitions(plan.partitions) for name in names[:-1] if counts[name] < plan.partitions}
        if grow:
            await admin.create_partitions(grow)
        say(f"grew {len(grow)} instance-keyed topics to {plan.partitions} partitions")
        spec = topics_mod.get(topics_mod.ENGINE_INSTANCES_CHANGELOG)
        await admin.delete_topics([plan.changelog])
        for _ in range(100):  # deletion is asynchronous
            try:
                await admin.create_topics([NewTopic(plan.changelog, plan.partitions, 1,
                                                    topic_configs=spec.topic_configs())])
                break
            except Exception:  # TopicAlreadyExists while the delete completes
                await asyncio.sleep(0.2)
        else:
            raise RepartitionError(f"could not recreate {plan.changelog}")
        for _ in range(150):  # until the recreated topic shows the new count with a leader for each partition
            with contextlib.suppress(Exception):
                described = (await admin.describe_topics([plan.changelog]))[0]
                parts = described.get("partitions") or []
                if len(parts) == plan.partitions and all(p["leader"] >= 0 for p in parts):
                    break
            await asyncio.sleep(0.2)
        else:
            raise RepartitionError(f"{plan.changelog} does not show {plan.partitions} partitions yet")
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=plan.bootstrap, enable_idempotence=True, linger_ms=5)
    await producer.start()
    try:
        for key, value in states.items():
            # the partition is named, not left to metadata that may lag: the key's home under the new count
            await producer.send(plan.changelog, value, key=key, partition=partition_for(key, plan.partitions))
        await producer.flush()
    finally:
        await producer.stop()
    say(f"rewrote {len(states)} states to {plan.changelog} on {plan.partitions} partitions; set "
        f"FLOWLINE_PARTITIONS={plan.partitions} and start the engines")
    return {name: plan.partitions for name in names}


def main(argv: list[str] | None = None) -> int:

    parser = argparse.ArgumentParser(prog="flowline repartition", description=__doc__.split("\n")[0])
    parser.add_argument("--partitions", type=int, required=True)
    parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    parser.add_argument("--from-backup", type=Path, help="states from an earlier run's backup file")
    args = parser.parse_args(argv)
    plan = Plan(bootstrap=env("FLOWLINE_KAFKA_BOOTSTRAP"),
                prefix=env("FLOWLINE_TOPIC_PREFIX"), partitions=args.partitions,
                engine_id=env("FLOWLINE_ENGINE_ID"), from_backup=args.from_backup)
    try:
        asyncio.run(repartition(plan, confirm=not args.yes))
    except RepartitionError as exc:
        print(f"flowline repartition: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
