"""The projector: `workflow.events` -> the PostgreSQL read model the gateway serves.

One consumer group (`flowline-projector`), read_committed. For each polled batch it takes the touched
instances' folded states (as it last wrote them, else read from the database), applies the new events with
`store.projection.fold`, and writes every changed row together with each partition's next offset in
`projector_offsets`, the status row and the NOTIFY, all in ONE statement (`WRITE_BATCH`), which checks
under the rows' locks that nothing moved meanwhile: one or two round trips per batch. On assignment it
seeks to those stored offsets (to the beginning where none is stored), never to Kafka's committed ones:
the read model and its position commit or vanish together, so a commit PostgreSQL loses (asynchronous
commit and a crash, a failover, a restored backup) is projected again instead of leaving a gap, and a
crash after the commit re-reads nothing (issue 9, ADR 11). A loss under a running projector is noticed
too: each batch, and a check while no batch comes (every `STATUS_EVERY_SECONDS`, at once after the
database was seen away, or when the lag changed), compares the offsets it stored with the database's and seeks
back where the database has less (`LostCommits`). Kafka's committed offsets are still written, at most
once a second, for lag monitoring only. A record that is no event, or an event the read model cannot
take, goes to `workflow.dlq` with the reason (never skipped silently), before its position is stored. Lag
(last stable offset - position, summed over the assigned partitions) is a Prometheus gauge and a row in
`projector_status` (written by each batch, and by the same check), which `/health` reads.

Run it with `flowline projector` (environment: FLOWLINE_KAFKA_BOOTSTRAP, DATABASE_URL,
FLOWLINE_TOPIC_PREFIX, FLOWLINE_PROJECTOR_GROUP, FLOWLINE_PROJECTOR_METRICS_PORT).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client import Counter, Gauge, Histogram, start_http_server

from core import events as ev
from schemas import dlq
from schemas import topics as topics_mod
from schemas.codec import Codec, DecodeError
from schemas.consumers import TRAILING, LongPoll, consumer_options
from schemas.notify import CHANNEL
from schemas.process import run_process, wait_for_kafka
from schemas.settings import VARIABLES, env, env_int
from store.projection import BatchRows, InstanceView, dumps, fold, instance_row, pending_row, ts

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
# database answers again (ADR 15).
STATUS_EVERY_SECONDS = 10.0

# instances whose last written state the projector keeps (`Projector._remember`): a few hundred KB at most
VIEWS_KEPT = 4096
# attempts of a batch that finds its instances moved on by another writer (a rebalance: two projectors for a
# moment); each attempt reads them again, so a second one normally succeeds
STALE_RETRIES = 5

# errors that say the database is away (wait and retry), not that an event cannot be applied; asyncpg raises
# InternalClientError ("cannot switch to state N; another operation is in progress") on a connection the
# server died under mid-query (found by tests/integration/test_chaos_postgres.py, which kills PostgreSQL)
DATABASE_OUTAGES = (OSError, asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError,
                    asyncpg.TooManyConnectionsError, asyncpg.InterfaceError, asyncpg.InternalClientError,
                    asyncio.TimeoutError)
# a batch that lost a deadlock (two projectors for a moment, during a rebalance: both bump the same analytics
# counters, store/migrations/0011) is retried whole, like an outage, not applied one event at a time
RETRIED = (*DATABASE_OUTAGES, asyncpg.DeadlockDetectedError)

# One batch is ONE statement: each table's rows arrive as one JSON array (`jsonb_populate_recordset` maps its
# keys to the table's columns and types), every write is a data-modifying CTE, and the same statement stores
# the partitions' next offsets, the status row and the NOTIFY. Why: the projector wrote a batch with ~15
# round trips (a statement per table, the offsets checked then saved, the status, the notification, the
# pool's reset), and at 16 workflows in flight a batch holds one or two workflows, so the round trips, not
# the rows, were its CPU and much of PostgreSQL's (issue 15, docs/performance.md). The sub-statements run on
# one snapshot and none reads what another writes: step rows carry their instance's tenant, template and
# creation time themselves (so migration 0011's owner trigger looks nothing up), a batch never has the same
# row twice in one table, and the open and the closed approvals are different instances.
WRITE_BATCH = """
WITH
current AS (
    -- the batch's instances as they are now, locked (in id order, as every projector locks them); the batch was
    -- folded onto the states it read before (or remembered from its own last write, `Projector._views`)
    SELECT id, last_seq FROM workflow_instances WHERE id = ANY($17::text[]) ORDER BY id FOR UPDATE
),
stale AS (
    -- instances whose row is not (or no longer) at the sequence number the batch was folded onto: another
    -- projector wrote them meanwhile (a rebalance), so the batch writes nothing and is folded again
    SELECT coalesce(jsonb_agg(g.id), '[]'::jsonb) AS ids
    FROM unnest($17::text[], $18::bigint[]) AS g(id, seq) LEFT JOIN current c ON c.id = g.id
    WHERE c.last_seq IS DISTINCT FROM g.seq
),
prev AS (
    -- the stored offsets of the batch's partitions, each with the value it has now (read under the row's lock)
    SELECT topic, partition, next_offset FROM projector_offsets
    WHERE (topic, partition) IN (SELECT * FROM unnest($12::text[], $13::int[])) FOR UPDATE
),
lost AS (
    -- offsets this projector stored that the database no longer has (`LostCommits`): nothing is written
    SELECT coalesce(jsonb_agg(jsonb_build_array(k.t, k.p, p.next_offset)), '[]'::jsonb) AS found
    FROM unnest($12::text[], $13::int[], $19::bigint[]) AS k(t, p, known)
    LEFT JOIN prev p ON p.topic = k.t AND p.partition = k.p
    WHERE k.known IS NOT NULL AND (p.next_offset IS NULL OR p.next_offset < k.known)
),
ok AS (
    SELECT (SELECT ids FROM stale) = '[]'::jsonb AND (SELECT found FROM lost) = '[]'::jsonb AS ok
),
inst AS (
    INSERT INTO workflow_instances AS w (id, tenant_id, template_id, template_version, template_name, status,
        current_step, current_step_name, step_count, trigger, source, initiated_by, initiated_by_kind,
        initiated_by_agent_id, agent_context, blocking, failure_reason, amount, state, last_seq, created_at,
        updated_at, completed_at, steps_meta, machine_state, pending_transition)
    SELECT r.id, r.tenant_id, r.template_id, r.template_version, r.template_name, r.status, r.current_step,
        r.current_step_name, r.step_count, r.trigger, r.source, r.initiated_by, r.initiated_by_kind,
        r.initiated_by_agent_id, r.agent_context, r.blocking, r.failure_reason, r.amount, s.state, r.last_seq,
        r.created_at, r.updated_at, r.completed_at, r.steps_meta, r.machine_state, r.pending_transition
    FROM jsonb_populate_recordset(NULL::workflow_instances, $1::jsonb) WITH ORDINALITY AS r
    JOIN unnest($16::bytea[]) WITH ORDINALITY AS s(state, n) ON s.n = r.ordinality
    WHERE (SELECT ok FROM ok)
    ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, current_step = EXCLUDED.current_step,
        current_step_name = EXCLUDED.current_step_name, blocking = EXCLUDED.blocking,
        failure_reason = EXCLUDED.failure_reason, state = EXCLUDED.state, last_seq = EXCLUDED.last_seq,
        updated_at = EXCLUDED.updated_at, completed_at = EXCLUDED.completed_at, steps_meta = EXCLUDED.steps_meta,
        machine_state = EXCLUDED.machine_state, pending_transition = EXCLUDED.pending_transition,
        source = CASE WHEN EXCLUDED.source = '' THEN w.source ELSE EXCLUDED.source END
    WHERE w.last_seq < EXCLUDED.last_seq
),
steps AS (
    INSERT INTO workflow_step_executions AS s (instance_id, step, attempt, name, type, status, awaiting, started_at,
        ended_at, approvers, required, votes, approved_by, approved_by_agent_id, agent_reasoning, output, error,
        retries, external_request, external_response, tenant_id, template_id, instance_created_at)
    SELECT instance_id, step, attempt, name, type, status, awaiting, started_at, ended_at, approvers, required,
        votes, approved_by, approved_by_agent_id, agent_reasoning, output, error, retries, external_request,
        external_response, tenant_id, template_id, instance_created_at
    FROM jsonb_populate_recordset(NULL::workflow_step_executions, $2::jsonb)
    WHERE (SELECT ok FROM ok)
    ON CONFLICT (instance_id, step, attempt) DO UPDATE SET name = EXCLUDED.name, type = EXCLUDED.type,
        status = EXCLUDED.status, awaiting = EXCLUDED.awaiting, started_at = EXCLUDED.started_at,
        ended_at = EXCLUDED.ended_at, approvers = EXCLUDED.approvers, required = EXCLUDED.required,
        votes = EXCLUDED.votes, approved_by = EXCLUDED.approved_by,
        approved_by_agent_id = EXCLUDED.approved_by_agent_id, agent_reasoning = EXCLUDED.agent_reasoning,
        output = EXCLUDED.output, error = EXCLUDED.error, retries = EXCLUDED.retries,
        external_request = COALESCE(EXCLUDED.external_request, s.external_request),
        external_response = COALESCE(EXCLUDED.external_response, s.external_response)
),
pending AS (
    INSERT INTO workflow_pending_approvals (instance_id, tenant_id, template_id, step, attempt, step_name, kind,
        approvers, approver_roles, approver_users, approver_agents, required, approvals, decided_by, initiated_by,
        amount, deadline, requested_at, recommendations)
    SELECT instance_id, tenant_id, template_id, step, attempt, step_name, kind, approvers, approver_roles,
        approver_users, approver_agents, required, approvals, decided_by, initiated_by, amount, deadline,
        requested_at, recommendations
    FROM jsonb_populate_recordset(NULL::workflow_pending_approvals, $3::jsonb)
    WHERE (SELECT ok FROM ok)
    ON CONFLICT (instance_id) DO UPDATE SET step = EXCLUDED.step, attempt = EXCLUDED.attempt,
        step_name = EXCLUDED.step_name, kind = EXCLUDED.kind, approvers = EXCLUDED.approvers,
        approver_roles = EXCLUDED.approver_roles, approver_users = EXCLUDED.approver_users,
        approver_agents = EXCLUDED.approver_agents, required = EXCLUDED.required, approvals = EXCLUDED.approvals,
        decided_by = EXCLUDED.decided_by, deadline = EXCLUDED.deadline, requested_at = EXCLUDED.requested_at,
        recommendations = EXCLUDED.recommendations
),
closed AS (
    DELETE FROM workflow_pending_approvals WHERE instance_id = ANY($4::text[]) AND (SELECT ok FROM ok)
),
transitions AS (
    INSERT INTO workflow_transitions (instance_id, seq, tenant_id, event_type, step, command_id, actor_id,
        actor_kind, reasoning, details, at)
    SELECT instance_id, seq, tenant_id, event_type, step, command_id, actor_id, actor_kind, reasoning, details, at
    FROM jsonb_populate_recordset(NULL::workflow_transitions, $5::jsonb)
    WHERE (SELECT ok FROM ok)
    ON CONFLICT (instance_id, seq) DO NOTHING
),
rejections AS (
    INSERT INTO workflow_rejected_commands (command_id, instance_id, command_type, reason, at)
    SELECT command_id, instance_id, command_type, reason, at
    FROM jsonb_populate_recordset(NULL::workflow_rejected_commands, $6::jsonb)
    WHERE (SELECT ok FROM ok)
    ON CONFLICT (command_id) DO NOTHING
),
security AS (
    INSERT INTO security_log (command_id, tenant_id, actor_id, kind, command_type, instance_id, reason, at)
    SELECT command_id, tenant_id, actor_id, kind, command_type, instance_id, reason, at
    FROM jsonb_populate_recordset(NULL::security_log, $7::jsonb)
    WHERE (SELECT ok FROM ok)
    ON CONFLICT (command_id) DO NOTHING
),
status AS (
    INSERT INTO projector_status AS p (consumer_group, lag, events_applied, last_event_at, updated_at)
    SELECT $8, $9, $10, to_timestamp($11 / 1000.0), now() WHERE (SELECT ok FROM ok)
    ON CONFLICT (consumer_group) DO UPDATE SET lag = EXCLUDED.lag, events_applied = EXCLUDED.events_applied,
        last_event_at = COALESCE(EXCLUDED.last_event_at, p.last_event_at), updated_at = now()
),
moved AS (
    UPDATE projector_offsets o SET next_offset = GREATEST(o.next_offset, x.n), updated_at = now()
    FROM unnest($12::text[], $13::int[], $14::bigint[]) AS x(t, p, n)
    WHERE x.t = o.topic AND x.p = o.partition AND (SELECT ok FROM ok)
),
added AS (
    -- partitions with no stored offset yet (a concurrent first insert is settled by ON CONFLICT)
    INSERT INTO projector_offsets AS o (topic, partition, next_offset, updated_at)
    SELECT t, p, n, now() FROM unnest($12::text[], $13::int[], $14::bigint[]) AS x(t, p, n)
    WHERE NOT EXISTS (SELECT 1 FROM prev e WHERE e.topic = x.t AND e.partition = x.p) AND (SELECT ok FROM ok)
    ON CONFLICT (topic, partition) DO UPDATE
        SET next_offset = GREATEST(o.next_offset, EXCLUDED.next_offset), updated_at = now()
),
notified AS (
    SELECT pg_notify('""" + CHANNEL + """', '') WHERE $15::boolean AND (SELECT ok FROM ok)
)
SELECT (SELECT count(*) FROM notified) AS notified, (SELECT ids FROM stale) AS stale, (SELECT found FROM lost) AS lost
"""
# The batch is ONE statement and no transaction around it (a statement is atomic by itself): no BEGIN, no
# read under lock, no COMMIT. It is folded onto states read WITHOUT a lock (or remembered, below), and the
# statement itself checks, under the rows' locks, what the lock held for the whole transaction guaranteed
# before: every instance is still at the sequence number the batch was folded onto (`stale`), and the database
# still has the offsets this projector stored (`lost`). If either fails it writes nothing at all; the
# projector then reads the instances again and folds anew (`stale`), or seeks back (`LostCommits`). The
# offsets only move forward (GREATEST): "every record before next_offset is in the read model" stays true
# when a projector that lost the partition in a rebalance finishes its batch after the new owner stored a
# lower offset.

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


async def _keep_session(connection) -> None:
    """The pool's reset: nothing to undo, so no round trip (asyncpg's default sends `SELECT
    pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL` on every release, one more round trip per
    batch on both sides: issue 15). The projector's statements change no session state (no SET, LISTEN,
    cursors or advisory locks); a transaction left open is still rolled back by the pool itself."""


# The projector's commits do not wait for the WAL to reach the disk (docs/adr/0020): what a crash of
# PostgreSQL loses of them it loses with the offsets stored in the same statement (ADR 11), and the projector
# projects those records again (`LostCommits`). Its session only; every other writer keeps the server's
# setting.
SESSION_SETTINGS = {"synchronous_commit": "off"}


async def open_pool(database_url: str, **options: Any) -> asyncpg.Pool:
    """The projector's connections: two (a batch, and the once-a-second status and offset check), reset by
    nothing on release, committing asynchronously (`SESSION_SETTINGS`)."""
    settings = {**SESSION_SETTINGS, **options.pop("server_settings", {})}
    return await asyncpg.create_pool(database_url, min_size=1, max_size=2, reset=_keep_session,
                                     server_settings=settings, **options)


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
        self._last_status_write = self._last_monitoring_commit = 0.0
        self._monitoring: Positions = {}  # positions applied but not yet committed to Kafka (monitoring only)
        self._reported_lag: int | None = None
        self._database_was_away = False
        # the next offset this projector knows it stored, per partition (None: nothing stored yet)
        self._stored: dict[TopicPartition, int | None] = {}
        # instance id -> (state, steps_meta, last_seq, source, created_at) as this projector last wrote it
        self._views: OrderedDict[str, tuple[Any, list[dict[str, str]], int, str, Any]] = OrderedDict()

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        if not await wait_for_kafka(self.bootstrap_servers, self._stop):
            return  # stopped before the broker ever answered
        self.pool = await open_pool(self.database_url)
        self.producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap_servers, enable_idempotence=True)
        await self.producer.start()
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers, group_id=self.group_id,
            isolation_level="read_committed", enable_auto_commit=False, auto_offset_reset="earliest",
            max_partition_fetch_bytes=4 * 1024 * 1024, **consumer_options(shape=TRAILING))
        await self.consumer.start()
        self.consumer.subscribe([self.topic], listener=_ResumeFromReadModel(self))
        log.info("projector consuming %s as %s", self.topic, self.group_id)
        poll = LongPoll(self.consumer, shape=TRAILING)  # no step waits for the read model (schemas/consumers.py)
        try:
            while not self._stop.is_set():
                batches = await poll.getmany(max_records=self.max_records)
                records = [r for rs in batches.values() for r in rs]
                if records:
                    self.lag = await self._lag()  # what is left after this batch: its status row says so
                    try:
                        with BATCH_SECONDS.time():
                            await self.apply_records(records)
                    except LostCommits as lost:
                        log.warning("%s; resuming from the offsets the read model has", lost)
                        await self.seek_to_stored(self.consumer.assignment())
                        continue
                    self._monitoring.update(positions_after(records))
                if self.consumer.assignment():
                    self.ready.set()
                await self._report_lag()
        finally:
            with contextlib.suppress(Exception):
                await self._commit_for_monitoring()
            with contextlib.suppress(Exception):
                await self.consumer.stop()
            with contextlib.suppress(Exception):
                await self.producer.stop()
            await self.pool.close()

    async def seek_to_stored(self, assigned) -> None:
        """Seek `assigned` to the offsets stored with the read model; a partition without one starts at its
        beginning (the read model holds nothing of it: replaying is idempotent, skipping is not). An outage
        of the database is waited out: consuming from anywhere else could leave a gap. The instances' kept
        views are dropped: another projector may have written them meanwhile."""
        assert self.consumer is not None and self.pool is not None
        self._views.clear()
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

    async def _commit_for_monitoring(self) -> None:
        """Kafka's committed offsets only feed lag tools (the read model's own are in `projector_offsets`):
        written at most once a second, not per batch (a broker round trip per batch was a share of the
        projector's CPU at low load, issue 15); a failed commit, e.g. during a rebalance, is logged and
        changes nothing."""
        assert self.consumer is not None
        assigned = self.consumer.assignment()
        offsets = {tp: o for tp, o in self._monitoring.items() if tp in assigned}
        self._monitoring = {}
        self._last_monitoring_commit = time.monotonic()
        if not offsets:
            return
        try:
            await self.consumer.commit(offsets)
        except KafkaError:
            log.warning("committing the monitoring offsets to Kafka failed", exc_info=True)

    async def _lag(self) -> int:
        """Last stable offset - position, summed over the assigned partitions (no broker round trip)."""
        assert self.consumer is not None
        lag = 0
        for tp in self.consumer.assignment():
            end = self.consumer.last_stable_offset(tp) or self.consumer.highwater(tp)
            with contextlib.suppress(Exception):
                if end is not None:
                    lag += max(end - await self.consumer.position(tp), 0)
        return lag

    async def _report_lag(self) -> None:
        """Between batches: Kafka's monitoring offsets (at most once a second, when there are any), and the status
        row with the check that the database still has the offsets this projector stored (see below)."""
        assert self.consumer is not None and self.pool is not None
        self.lag = await self._lag()
        LAG.set(self.lag)
        now = time.monotonic()
        if self._monitoring and now - self._last_monitoring_commit >= 1.0:
            await self._commit_for_monitoring()
        # An idle projector sleeps (docs/adr/0015): the status row and the check of the stored offsets are
        # written after the database was seen away, when the lag changed (at most once a second: under load it
        # changes every batch, and each batch already writes the status in its own statement and checks its
        # offsets in its own transaction), or every STATUS_EVERY_SECONDS.
        since = now - self._last_status_write
        if not (self._database_was_away or since >= STATUS_EVERY_SECONDS
                or (self.lag != self._reported_lag and since >= 1.0)):
            return
        self._last_status_write = now
        try:
            await self._write_status(self.lag)
            self._reported_lag = self.lag
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
        stored (and with them the batches' rows), seek back to what it has. A batch checks the same in its statement
        (WRITE_BATCH's `lost`); this catches a loss after the last batch, when nothing else would."""
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

    async def _template_meta(self, events: list[ev.Event]) -> None:
        wanted = {(e.template_id, e.template_version) for e in events if isinstance(e, ev.InstanceStarted)}
        missing = [k for k in wanted if k not in self._template_steps]
        if not missing:
            return
        assert self.pool is not None
        rows = await self.pool.fetch(
            """SELECT template_id, version, document FROM workflow_template_versions
               WHERE (template_id, version) IN (SELECT * FROM unnest($1::text[], $2::int[]))""",
            [m[0] for m in missing], [m[1] for m in missing])
        for row in rows:
            doc = json.loads(row["document"]) if isinstance(row["document"], str) else row["document"]
            self._template_steps[(row["template_id"], row["version"])] = [
                {"name": str(s.get("name", "")), "type": str(s.get("type", ""))} for s in doc.get("steps", [])]

    async def apply_events(self, events: list[ev.Event], positions: Positions | None = None) -> BatchRows:
        """Fold `events` into the read model in one statement (idempotent), with `positions`, the offsets
        after the records they came from: the rows and the offsets commit, or are lost, together.

        One round trip when every instance of the batch is one this projector wrote last (`_views`), two
        when some must be read first; no transaction around them (see WRITE_BATCH). A batch that finds an
        instance moved on by another writer is folded again on what the database has now."""
        assert self.pool is not None
        for attempt in range(STALE_RETRIES):
            rows = await self._apply_once(events, positions, trust=attempt == 0)
            if rows is not None:
                return rows
        raise RuntimeError(f"the batch's instances kept changing under it ({STALE_RETRIES} attempts)")

    async def _apply_once(self, events: list[ev.Event], positions: Positions | None, *,
                          trust: bool) -> BatchRows | None:
        """One attempt of `apply_events`; None when an instance had moved on (nothing was written).

        With `trust`, an instance is not read when this projector wrote it last (`_views`), or when the
        batch starts with its `InstanceStarted` (a new instance has no row yet); the statement checks both
        assumptions, and the next attempt, without `trust`, reads every instance."""
        assert self.pool is not None
        rows = BatchRows()
        if not events and not positions:
            return rows
        ids = sorted({e.instance_id for e in events})
        views: dict[str, InstanceView] = {}
        created: dict[str, Any] = {}
        folded_on: dict[str, int | None] = {}  # the sequence number each instance's view starts from
        try:
            if events:
                await self._template_meta(events)
                unknown = []
                first: dict[str, ev.Event] = {}
                for e in events:
                    first.setdefault(e.instance_id, e)
                for iid in ids:
                    known = self._views.get(iid) if trust else None
                    if known is None:
                        if not (trust and isinstance(first[iid], ev.InstanceStarted) and first[iid].seq == 1):
                            unknown.append(iid)
                        continue
                    state, steps_meta, last_seq, source, at = known
                    views[iid] = InstanceView(state=state, steps_meta=list(steps_meta), last_seq=last_seq,
                                              source=source)
                    created[iid] = at
                if unknown:
                    for row in await self.pool.fetch(
                            "SELECT id, state, steps_meta, last_seq, source, created_at FROM workflow_instances "
                            "WHERE id = ANY($1)", unknown):
                        state = self.codec.decode(row["state"]) if row["state"] else None
                        meta = row["steps_meta"]
                        views[row["id"]] = InstanceView(
                            state=state, steps_meta=json.loads(meta) if isinstance(meta, str) else list(meta or []),
                            last_seq=row["last_seq"], source=row["source"])
                        created[row["id"]] = row["created_at"]
                folded_on = {iid: views[iid].last_seq if iid in views else None for iid in ids}
                fold(views, events, rows, self._template_steps)
            changed = [v for v in views.values() if v.changed and v.state is not None]
            instances, states, steps, pending, closed = [], [], [], [], []
            for v in changed:
                state = v.state
                # the row's creation time: the stored one (an upsert never changes it), else the new row's
                at = created.get(state.instance_id) or ts(state.created_at) or datetime.now(UTC)
                created[state.instance_id] = at
                instances.append(instance_row(v, at))
                states.append(self.codec.encode(state))  # binary, beside the JSON: half the bytes of hex in it
                owner = {"tenant_id": state.tenant_id, "template_id": state.template_id, "instance_created_at": at}
                steps.extend({"instance_id": state.instance_id, **r, **owner} for r in v.touched_steps.values())
                open_approval = pending_row(v)
                if open_approval is None:
                    closed.append(state.instance_id)
                else:
                    pending.append(open_approval)
            written = sorted(v.state.instance_id for v in changed)
            tps = sorted(positions or {}, key=lambda tp: (tp.topic, tp.partition))
            outcome = await self.pool.fetchrow(
                WRITE_BATCH, dumps(instances), dumps(steps), dumps(pending), closed, dumps(rows.transitions),
                dumps(rows.rejections), dumps(rows.security), self.group_id, self.lag,
                self.applied + rows.applied, rows.last_event_at or None, [tp.topic for tp in tps],
                [tp.partition for tp in tps], [positions[tp] for tp in tps],
                # delivered at commit: a gateway request waiting for these rows re-reads at once
                bool(changed or rows.rejections), states, written, [folded_on.get(i) for i in written],
                [self._stored.get(tp) for tp in tps])
        except BaseException:
            self._views.clear()  # the outcome is unknown: read the instances again next time
            raise
        lost = json.loads(outcome["lost"])
        if lost:
            self._views.clear()
            known = {TopicPartition(t, p): self._stored.get(TopicPartition(t, p)) for t, p, _ in lost}
            raise LostCommits("the read model lost stored offsets (partition: (now, before)) "
                              f"{ {p: (o, known[TopicPartition(t, p)]) for t, p, o in lost} }")
        stale = json.loads(outcome["stale"])
        if stale:
            log.info("instances %s were written by another projector meanwhile; folding the batch again", stale)
            self._views.clear()
            return None
        self._remember(views, created)
        self._stored.update(positions or {})
        self._last_status_write = time.monotonic()
        self._reported_lag = self.lag
        self.applied += rows.applied
        APPLIED.labels("applied").inc(rows.applied)
        APPLIED.labels("duplicate").inc(rows.skipped)
        return rows

    def _remember(self, views: dict[str, InstanceView], created: dict[str, Any]) -> None:
        """Keep what the batch wrote, so the instance's next batch need not read it back: at 16 workflows in
        flight a batch holds one or two workflows, and the read was one of its round trips (issue 15). The
        statement still checks each instance's sequence number under its lock, so a view that another
        writer made stale costs a second attempt, never a wrong row. A finished instance is forgotten (it
        rarely gets another event), and the oldest go first beyond `VIEWS_KEPT`."""
        for iid, v in views.items():
            if v.state is None:
                continue
            self._views.pop(iid, None)
            if v.state.is_terminal:
                continue
            self._views[iid] = (v.state, list(v.steps_meta), v.last_seq, v.source, created.get(iid))
        while len(self._views) > VIEWS_KEPT:
            self._views.pop(next(iter(self._views)))


async def _stored_offsets(conn, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
    rows = await conn.fetch(
        "SELECT topic, partition, next_offset FROM projector_offsets "
        "WHERE (topic, partition) IN (SELECT * FROM unnest($1::text[], $2::int[])) FOR UPDATE",
        [tp.topic for tp in tps], [tp.partition for tp in tps])
    return {TopicPartition(r["topic"], r["partition"]): r["next_offset"] for r in rows}


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
