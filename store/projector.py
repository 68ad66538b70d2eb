"""The projector: `workflow.events` -> the PostgreSQL read model the gateway serves.

One consumer group (`flowline-projector`), read_committed. For each polled batch it loads the touched
instances' folded states, applies the new events with `store.projection.fold`, and writes every changed
row in one transaction (executemany, pipelined by asyncpg), together with each partition's next offset
in `projector_offsets`. On assignment it seeks to those stored offsets (to the beginning where none is
stored), never to Kafka's committed ones: the read model and its position commit or vanish together, so
a commit PostgreSQL loses (asynchronous commit and a crash, a failover, a restored backup) is projected
again instead of leaving a gap, and a crash after the commit re-reads nothing (issue 9, ADR 11). A loss
under a running projector is noticed too: each batch, and a check every `STATUS_EVERY_SECONDS` while no
batch comes (at once after the database was seen away), compares the offsets it stored with the
database's and seeks back where the database has less (`LostCommits`). Kafka's
committed offsets are still written after each batch, for lag monitoring only. A record that is no event,
or an event the read model cannot take, goes to `workflow.dlq` with the reason (never skipped silently),
before its position is stored. Lag (last stable
offset - position, summed over the assigned partitions) is a Prometheus gauge and a row in
`projector_status`, which `/health` reads.

Run it with `flowline projector` (environment: FLOWLINE_KAFKA_BOOTSTRAP, DATABASE_URL,
FLOWLINE_TOPIC_PREFIX, FLOWLINE_PROJECTOR_GROUP, FLOWLINE_PROJECTOR_METRICS_PORT).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client import Counter, Gauge, Histogram, start_http_server

from core import events as ev
from schemas import dlq
from schemas import topics as topics_mod
from schemas.codec import Codec, DecodeError
from schemas.consumers import LongPoll, consumer_options
from schemas.notify import NOTIFY_SQL
from schemas.process import run_process, wait_for_kafka
from schemas.settings import VARIABLES, env, env_int
from store.projection import BatchRows, InstanceView, fold, instance_row, pending_row

log = logging.getLogger("flowline.projector")

LAG = Gauge("flowline_projector_lag", "events on workflow.events not yet applied to the read model")
APPLIED = Counter("flowline_projector_events_total", "events consumed by the projector", ["outcome"])
BATCH_SECONDS = Histogram("flowline_projector_batch_seconds", "time to apply one batch to PostgreSQL")

DEFAULT_GROUP = VARIABLES["FLOWLINE_PROJECTOR_GROUP"].default

# How often an idle projector reports (projector_status, which /health reads: stale after 30 s) and checks
# that the database still has the offsets it stored. Once a second, it was a PostgreSQL commit every second
# on an idle stack (issue 15). A loss needs the database to crash, fail over or be restored; a projector
# that saw it away meanwhile (a failed report or check) checks again at each poll until a check gets
# through, so an idle projector finds a loss within this interval at most, and mostly as soon as the
# database answers again (ADR 13).
STATUS_EVERY_SECONDS = 10.0

# errors that say the database is away (wait and retry), not that an event cannot be applied; asyncpg raises
# InternalClientError ("cannot switch to state N; another operation is in progress") on a connection the
# server died under mid-query (found by tests/integration/test_chaos_postgres.py, which kills PostgreSQL)
DATABASE_OUTAGES = (OSError, asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError,
                    asyncpg.TooManyConnectionsError, asyncpg.InterfaceError, asyncpg.InternalClientError,
                    asyncio.TimeoutError)
# a batch that lost a deadlock (two projectors for a moment, during a rebalance: both bump the same analytics
# counters, store/migrations/0011) is retried whole, like an outage, not applied one event at a time
RETRIED = (*DATABASE_OUTAGES, asyncpg.DeadlockDetectedError)

UPSERT_INSTANCE = """
INSERT INTO workflow_instances (id, tenant_id, template_id, template_version, template_name, status, current_step,
    current_step_name, step_count, trigger, source, initiated_by, initiated_by_kind, initiated_by_agent_id,
    agent_context, blocking, failure_reason, amount, state, last_seq, created_at, updated_at, completed_at,
    steps_meta, machine_state, pending_transition)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11, $12, $13, $14, $15::jsonb, $16::jsonb, $17, $18, $19,
    $20, $21, $22, $23, $24::jsonb, $25, $26)
ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, current_step = EXCLUDED.current_step,
    current_step_name = EXCLUDED.current_step_name, blocking = EXCLUDED.blocking,
    failure_reason = EXCLUDED.failure_reason, state = EXCLUDED.state, last_seq = EXCLUDED.last_seq,
    updated_at = EXCLUDED.updated_at, completed_at = EXCLUDED.completed_at, steps_meta = EXCLUDED.steps_meta,
    machine_state = EXCLUDED.machine_state, pending_transition = EXCLUDED.pending_transition,
    source = CASE WHEN EXCLUDED.source = '' THEN workflow_instances.source ELSE EXCLUDED.source END
WHERE workflow_instances.last_seq < EXCLUDED.last_seq
"""

UPSERT_STEP = """
INSERT INTO workflow_step_executions (instance_id, step, attempt, name, type, status, awaiting, started_at, ended_at,
    approvers, required, votes, approved_by, approved_by_agent_id, agent_reasoning, output, error, retries,
    external_request, external_response)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11, $12::jsonb, $13, $14, $15, $16::jsonb, $17, $18,
    $19::jsonb, $20::jsonb)
ON CONFLICT (instance_id, step, attempt) DO UPDATE SET name = EXCLUDED.name, type = EXCLUDED.type,
    status = EXCLUDED.status, awaiting = EXCLUDED.awaiting, started_at = EXCLUDED.started_at,
    ended_at = EXCLUDED.ended_at, approvers = EXCLUDED.approvers, required = EXCLUDED.required,
    votes = EXCLUDED.votes, approved_by = EXCLUDED.approved_by,
    approved_by_agent_id = EXCLUDED.approved_by_agent_id, agent_reasoning = EXCLUDED.agent_reasoning,
    output = EXCLUDED.output, error = EXCLUDED.error, retries = EXCLUDED.retries,
    external_request = COALESCE(EXCLUDED.external_request, workflow_step_executions.external_request),
    external_response = COALESCE(EXCLUDED.external_response, workflow_step_executions.external_response)
"""

INSERT_TRANSITION = """
INSERT INTO workflow_transitions (instance_id, seq, tenant_id, event_type, step, command_id, actor_id, actor_kind,
    reasoning, details, at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11)
ON CONFLICT (instance_id, seq) DO NOTHING
"""

INSERT_REJECTION = """
INSERT INTO workflow_rejected_commands (command_id, instance_id, command_type, reason, at)
VALUES ($1, $2, $3, $4, $5) ON CONFLICT (command_id) DO NOTHING
"""

INSERT_SECURITY = """
INSERT INTO security_log (command_id, tenant_id, actor_id, kind, command_type, instance_id, reason, at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (command_id) DO NOTHING
"""

UPSERT_PENDING = """
INSERT INTO workflow_pending_approvals (instance_id, tenant_id, template_id, step, attempt, step_name, kind,
    approvers, approver_roles, approver_users, approver_agents, required, approvals, decided_by, initiated_by,
    amount, deadline, requested_at, recommendations)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19::jsonb)
ON CONFLICT (instance_id) DO UPDATE SET step = EXCLUDED.step, attempt = EXCLUDED.attempt,
    step_name = EXCLUDED.step_name, kind = EXCLUDED.kind, approvers = EXCLUDED.approvers,
    approver_roles = EXCLUDED.approver_roles, approver_users = EXCLUDED.approver_users,
    approver_agents = EXCLUDED.approver_agents, required = EXCLUDED.required, approvals = EXCLUDED.approvals,
    decided_by = EXCLUDED.decided_by, deadline = EXCLUDED.deadline, requested_at = EXCLUDED.requested_at,
    recommendations = EXCLUDED.recommendations
"""


SAVE_OFFSETS = """
INSERT INTO projector_offsets (topic, partition, next_offset, updated_at)
SELECT t, p, o, now() FROM unnest($1::text[], $2::int[], $3::bigint[]) AS x(t, p, o)
ON CONFLICT (topic, partition) DO UPDATE
    SET next_offset = GREATEST(projector_offsets.next_offset, EXCLUDED.next_offset), updated_at = now()
"""
# GREATEST: "every record before next_offset is in the read model" stays true when a projector that lost
# the partition in a rebalance finishes its batch after the new owner stored a lower offset.

Positions = dict[TopicPartition, int]


class LostCommits(Exception):
    """PostgreSQL no longer has offsets this projector stored (it lost commits it had acknowledged: a crash
    with asynchronous commit, a failover, a restore): the rows of those batches are gone too, so the
    projector seeks back to what the database does have and projects from there again."""


def positions_after(records) -> Positions:
    """Each partition's offset after the last of `records`: where the next batch starts."""
    out: Positions = {}
    for r in records:
        tp = TopicPartition(r.topic, r.partition)
        out[tp] = max(out.get(tp, 0), r.offset + 1)
    return out


class _ResumeFromReadModel(ConsumerRebalanceListener):
    """Seek every assigned partition to the offset stored with the read model (the documented aiokafka
    pattern for offsets kept outside Kafka)."""

    def __init__(self, projector: Projector) -> None:
        self.projector = projector

    async def on_partitions_revoked(self, revoked) -> None:
        pass

    async def on_partitions_assigned(self, assigned) -> None:
        await self.projector.seek_to_stored(assigned)


def _json(value: Any) -> str | None:
    from store.projection import dumps

    return None if value is None else dumps(value)


class Projector:
    def __init__(self, *, bootstrap_servers: str, database_url: str, topic_prefix: str = "",
                 group_id: str = DEFAULT_GROUP, codec: Codec | None = None, max_records: int = 2000) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.database_url = database_url
        self.topic = topic_prefix + topics_mod.WORKFLOW_EVENTS
        self.dlq_topic = topic_prefix + topics_mod.WORKFLOW_DLQ
        self.producer: AIOKafkaProducer | None = None
        self.group_id = group_id
        self.codec = codec or Codec.from_env()
        self.max_records = max_records
        self.pool: asyncpg.Pool | None = None
        self.consumer: AIOKafkaConsumer | None = None
        self.lag = 0
        self.applied = 0
        self.ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._template_steps: dict[tuple[str, int], list[dict[str, str]]] = {}
        self._last_status_write = 0.0
        self._reported_lag: int | None = None
        self._database_was_away = False
        # the next offset this projector knows it stored, per partition (None: nothing stored yet)
        self._stored: dict[TopicPartition, int | None] = {}

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        if not await wait_for_kafka(self.bootstrap_servers, self._stop):
            return  # stopped before the broker ever answered
        self.pool = await asyncpg.create_pool(self.database_url, min_size=1, max_size=2)
        self.producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap_servers, enable_idempotence=True)
        await self.producer.start()
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers, group_id=self.group_id,
            isolation_level="read_committed", enable_auto_commit=False, auto_offset_reset="earliest",
            max_partition_fetch_bytes=4 * 1024 * 1024, **consumer_options())
        await self.consumer.start()
        self.consumer.subscribe([self.topic], listener=_ResumeFromReadModel(self))
        log.info("projector consuming %s as %s", self.topic, self.group_id)
        poll = LongPoll(self.consumer)
        try:
            while not self._stop.is_set():
                batches = await poll.getmany(max_records=self.max_records)
                records = [r for rs in batches.values() for r in rs]
                if records:
                    try:
                        with BATCH_SECONDS.time():
                            await self.apply_records(records)
                    except LostCommits as lost:
                        log.warning("%s; resuming from the offsets the read model has", lost)
                        await self.seek_to_stored(self.consumer.assignment())
                        continue
                    await self._commit_for_monitoring(records)
                if self.consumer.assignment():
                    self.ready.set()
                await self._report_lag(force=bool(records))
        finally:
            with contextlib.suppress(Exception):
                await self.consumer.stop()
            with contextlib.suppress(Exception):
                await self.producer.stop()
            await self.pool.close()

    async def seek_to_stored(self, assigned) -> None:
        """Seek `assigned` to the offsets stored with the read model; a partition without one starts at its
        beginning (the read model holds nothing of it: replaying is idempotent, skipping is not). An outage
        of the database is waited out: consuming from anywhere else could leave a gap."""
        assert self.consumer is not None and self.pool is not None
        partitions = sorted(tp.partition for tp in assigned if tp.topic == self.topic)
        if not partitions:
            return
        delay = 0.2
        while True:
            try:
                rows = await self.pool.fetch(
                    "SELECT partition, next_offset FROM projector_offsets WHERE topic = $1 AND partition = ANY($2)",
                    self.topic, partitions)
                break
            except DATABASE_OUTAGES:
                if self._stop.is_set():
                    raise
                log.warning("the database is unavailable; stored offsets not read, retrying in %.1fs", delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        stored = {r["partition"]: r["next_offset"] for r in rows}
        fresh = [TopicPartition(self.topic, p) for p in partitions if p not in stored]
        for p in partitions:
            self._stored[TopicPartition(self.topic, p)] = stored.get(p)
        for partition, offset in stored.items():
            self.consumer.seek(TopicPartition(self.topic, partition), offset)
        if fresh:
            await self.consumer.seek_to_beginning(*fresh)
        log.info("resuming %s from the read model's offsets %s (from the beginning: %s)", self.topic, stored,
                 [tp.partition for tp in fresh])

    async def _commit_for_monitoring(self, records) -> None:
        """Kafka's committed offsets only feed lag tools (the read model's own are in `projector_offsets`):
        a failed commit, e.g. during a rebalance, is logged and changes nothing."""
        assert self.consumer is not None
        assigned = self.consumer.assignment()
        offsets = {tp: o for tp, o in positions_after(records).items() if tp in assigned}
        if not offsets:
            return
        try:
            await self.consumer.commit(offsets)
        except KafkaError:
            log.warning("committing the monitoring offsets to Kafka failed", exc_info=True)

    async def _report_lag(self, *, force: bool) -> None:
        assert self.consumer is not None and self.pool is not None
        lag = 0
        for tp in self.consumer.assignment():
            end = self.consumer.last_stable_offset(tp) or self.consumer.highwater(tp)
            with contextlib.suppress(Exception):
                if end is not None:
                    lag += max(end - await self.consumer.position(tp), 0)
        self.lag = lag
        LAG.set(lag)
        now = time.monotonic()
        if (force or lag != self._reported_lag or self._database_was_away
                or now - self._last_status_write >= STATUS_EVERY_SECONDS):
            self._last_status_write = now
            try:
                await self._write_status(lag)
                self._reported_lag = lag
                await self._verify_stored()
                self._database_was_away = False
            except DATABASE_OUTAGES:
                self._database_was_away = True
                # The status row is a report, not state: during an outage it waits for the next write (the
                # batch itself waits the outage out in `_apply_retrying`). Raising here ended `run()`, and the
                # read model stopped for good after a PostgreSQL restart (tests/integration/test_chaos_postgres.py).
                log.warning("the database is unavailable; projector status not written", exc_info=True)

    async def _verify_stored(self) -> None:
        """Also when no batch comes (`STATUS_EVERY_SECONDS`): if the database lost offsets this projector
        stored (and with them the batches' rows), seek back to what it has. A batch checks the same in its transaction
        (`_check_stored`); this catches a loss after the last batch, when nothing else would."""
        assert self.consumer is not None and self.pool is not None
        assigned = self.consumer.assignment()
        known = {tp: o for tp, o in self._stored.items() if o is not None and tp in assigned}
        if not known:
            return
        async with self.pool.acquire() as conn:
            stored = await _stored_offsets(conn, sorted(known, key=lambda tp: (tp.topic, tp.partition)))
        lost = {tp.partition: (stored.get(tp), o) for tp, o in known.items() if stored.get(tp, -1) < o}
        if lost:
            log.warning("the read model lost stored offsets (partition: (now, before)) %s; resuming from them",
                        lost)
            await self.seek_to_stored(assigned)

    async def _write_status(self, lag: int) -> None:
        assert self.pool is not None
        await self.pool.execute(
            """INSERT INTO projector_status (consumer_group, lag, events_applied, updated_at)
               VALUES ($1, $2, $3, now())
               ON CONFLICT (consumer_group) DO UPDATE SET lag = EXCLUDED.lag,
                   events_applied = EXCLUDED.events_applied, updated_at = now()""",
            self.group_id, lag, self.applied)

    def decode(self, records) -> tuple[list[tuple[Any, ev.Event]], list[tuple[Any, str, str]]]:
        """The batch's events (with their records), and the records that are no event, with the reason."""
        events, bad = [], []
        for record in records:
            if record.value is None:
                continue
            try:
                value = self.codec.decode(record.value)
            except DecodeError as exc:
                bad.append((record, str(exc), "undecodable"))
                continue
            if isinstance(value, ev.Event):
                events.append((record, value))
            else:
                bad.append((record, f"{type(value).__name__} is not a workflow event", "not_an_event"))
        return events, bad

    async def apply_records(self, records) -> None:
        """Apply a batch; nothing in it is skipped: what is no event, or cannot be applied, is dead-lettered.

        The batch is applied in one database transaction. If that fails for anything but an outage of the
        database (which is waited out), the records are applied one at a time, and each one that still
        fails is dead-lettered with the reason, so that one bad event never stops the read model."""
        positions = positions_after(records)
        events, bad = self.decode(records)
        for record, reason, error_type in bad:
            await self.dead_letter(record, reason, error_type)
        try:
            await self._apply_retrying([e for _, e in events], positions)
            return
        except LostCommits:
            raise
        except Exception:
            log.warning("applying a batch of %d events failed; applying them one at a time", len(events),
                        exc_info=True)
        for record, event in events:
            try:
                await self._apply_retrying([event], positions_after([record]))
            except LostCommits:
                raise
            except Exception as exc:
                log.exception("event %s/%s@%s cannot be applied", record.topic, record.partition, record.offset)
                await self.dead_letter(record, f"projector could not apply it: {type(exc).__name__}: {exc}",
                                       "unappliable")
        # the dead-lettered records' positions, once their letters are out
        await self._apply_retrying([], positions)

    async def _apply_retrying(self, events: list[ev.Event], positions: Positions) -> None:
        delay = 0.2
        while True:
            try:
                await self.apply_events(events, positions)
                return
            except RETRIED:
                if self._stop.is_set():
                    raise
                log.warning("the database is unavailable; retrying in %.1fs", delay, exc_info=True)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def dead_letter(self, record, reason: str, error_type: str) -> None:
        """Publish the record's (bounded) dead letter before its offset can be committed."""
        assert self.producer is not None
        key, value, letter = dlq.dead_letter(self.codec.encode, record, reason, error_type, self.group_id)
        await self.producer.send_and_wait(self.dlq_topic, value, key=key)
        APPLIED.labels(error_type).inc()
        log.error("record %s/%s@%s sent to the DLQ: %s", record.topic, record.partition, record.offset,
                  letter.reason[:500])

    async def _check_stored(self, conn, positions: Positions | None) -> None:
        """Raise LostCommits when the database has less than this projector stored before (in the batch's
        transaction, with the offset rows locked): projecting on from the consumer's position would leave
        the lost batches out of the read model for good."""
        known = {tp: self._stored[tp] for tp in positions or {} if self._stored.get(tp) is not None}
        if not known:
            return
        stored = await _stored_offsets(conn, sorted(known, key=lambda tp: (tp.topic, tp.partition)))
        lost = {tp.partition: (stored.get(tp), offset) for tp, offset in known.items()
                if stored.get(tp) is None or stored[tp] < offset}
        if lost:
            raise LostCommits(f"the read model lost stored offsets (partition: (now, before)) {lost}")

    async def _template_meta(self, conn, events: list[ev.Event]) -> None:
        wanted = {(e.template_id, e.template_version) for e in events if isinstance(e, ev.InstanceStarted)}
        missing = [k for k in wanted if k not in self._template_steps]
        if not missing:
            return
        rows = await conn.fetch(
            """SELECT template_id, version, document FROM workflow_template_versions
               WHERE (template_id, version) IN (SELECT * FROM unnest($1::text[], $2::int[]))""",
            [m[0] for m in missing], [m[1] for m in missing])
        import json

        for row in rows:
            doc = json.loads(row["document"]) if isinstance(row["document"], str) else row["document"]
            self._template_steps[(row["template_id"], row["version"])] = [
                {"name": str(s.get("name", "")), "type": str(s.get("type", ""))} for s in doc.get("steps", [])]

    async def apply_events(self, events: list[ev.Event], positions: Positions | None = None) -> BatchRows:
        """Fold `events` into the read model in one transaction (idempotent), with `positions`, the offsets
        after the records they came from: the rows and the offsets commit, or are lost, together."""
        assert self.pool is not None
        rows = BatchRows()
        if not events and not positions:
            return rows
        import json

        ids = sorted({e.instance_id for e in events})
        async with self.pool.acquire() as conn, conn.transaction():
            await self._check_stored(conn, positions)
            if not events:
                await _save_positions(conn, positions)
                self._stored.update(positions or {})
                return rows
            await self._template_meta(conn, events)
            existing = await conn.fetch(
                "SELECT id, state, steps_meta, last_seq, source FROM workflow_instances WHERE id = ANY($1) "
                "ORDER BY id FOR UPDATE", ids)
            views: dict[str, InstanceView] = {}
            for row in existing:
                state = self.codec.decode(row["state"]) if row["state"] else None
                meta = row["steps_meta"]
                views[row["id"]] = InstanceView(state=state, steps_meta=json.loads(meta) if isinstance(meta, str)
                                                else list(meta or []), last_seq=row["last_seq"],
                                                source=row["source"])
            fold(views, events, rows, self._template_steps)
            changed = [v for v in views.values() if v.changed and v.state is not None]
            if changed:
                await conn.executemany(UPSERT_INSTANCE, [instance_row(v, self.codec.encode(v.state))
                                                         for v in changed])
                steps = [(v.state.instance_id, *_step_tuple(r)) for v in changed for r in v.touched_steps.values()]
                if steps:
                    await conn.executemany(UPSERT_STEP, steps)
                pending = [p for p in (pending_row(v) for v in changed) if p is not None]
                closed = [v.state.instance_id for v in changed if pending_row(v) is None]
                if pending:
                    await conn.executemany(UPSERT_PENDING, pending)
                if closed:
                    await conn.execute("DELETE FROM workflow_pending_approvals WHERE instance_id = ANY($1)", closed)
            if rows.transitions:
                await conn.executemany(INSERT_TRANSITION, rows.transitions)
            if rows.rejections:
                await conn.executemany(INSERT_REJECTION, rows.rejections)
            if rows.security:
                await conn.executemany(INSERT_SECURITY, rows.security)
            if rows.last_event_at:
                await conn.execute(
                    """INSERT INTO projector_status (consumer_group, last_event_at, updated_at)
                       VALUES ($1, to_timestamp($2 / 1000.0), now())
                       ON CONFLICT (consumer_group) DO UPDATE SET last_event_at = EXCLUDED.last_event_at""",
                    self.group_id, rows.last_event_at)
            if changed or rows.rejections:
                # delivered at commit: a gateway request waiting for these rows re-reads at once
                await conn.execute(NOTIFY_SQL)
            await _save_positions(conn, positions)
        self._stored.update(positions or {})
        self.applied += rows.applied
        APPLIED.labels("applied").inc(rows.applied)
        APPLIED.labels("duplicate").inc(rows.skipped)
        return rows


async def _stored_offsets(conn, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
    rows = await conn.fetch(
        "SELECT topic, partition, next_offset FROM projector_offsets "
        "WHERE (topic, partition) IN (SELECT * FROM unnest($1::text[], $2::int[])) FOR UPDATE",
        [tp.topic for tp in tps], [tp.partition for tp in tps])
    return {TopicPartition(r["topic"], r["partition"]): r["next_offset"] for r in rows}


async def _save_positions(conn, positions: Positions | None) -> None:
    if positions:
        tps = sorted(positions, key=lambda tp: (tp.topic, tp.partition))
        await conn.execute(SAVE_OFFSETS, [tp.topic for tp in tps], [tp.partition for tp in tps],
                           [positions[tp] for tp in tps])


def _step_tuple(r: dict[str, Any]) -> tuple:
    return (r["step"], r["attempt"], r["name"], r["type"], r["status"], r["awaiting"], r["started_at"],
            r["ended_at"], _json(r["approvers"]), r["required"], _json(r["votes"]), r["approved_by"],
            r["approved_by_agent_id"], r["agent_reasoning"], _json(r["output"]), r["error"], r["retries"],
            _json(r["external_request"]), _json(r["external_response"]))


def main() -> int:
    projector = Projector(
        bootstrap_servers=env("FLOWLINE_KAFKA_BOOTSTRAP"),
        database_url=env("DATABASE_URL"),
        topic_prefix=env("FLOWLINE_TOPIC_PREFIX"),
        group_id=env("FLOWLINE_PROJECTOR_GROUP"))
    port = env_int("FLOWLINE_PROJECTOR_METRICS_PORT")
    if port:
        start_http_server(port, addr="127.0.0.1")

    return run_process(projector.run, projector.stop)
