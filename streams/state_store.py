"""The engine's instance states on local disk: one RocksDB store per partition, a small cache in memory.

Why: the worker used to hold every state of its partitions decoded in a dict (about 9 KB per waiting
instance, 9 GB at a million) and rebuilt it from the whole changelog after every start (about 5 minutes at
a million). Here the changelog stays the truth and the store is a copy of it that survives a restart
(docs/adr/0010-instance-states-in-a-local-rocksdb-store.md):

- the store holds each instance's ENCODED state as the changelog carries it, plus the changelog offset it
  is current to, written in one RocksDB write batch, so the two never disagree;
- the engine writes to it only after its Kafka transaction committed: an aborted transaction leaves
  nothing on disk, and the store is never ahead of the changelog. It may be behind (a `kill -9` between
  the commit and the write): reading the changelog from the stored offset on start catches it up, and
  replaying a record the store already holds is harmless (the last record of a key wins);
- a state is decoded only when it is used, and a bounded LRU keeps the decoded ones recently used;
- due times (timers, and the retention of finished instances) are an index in the store keyed by due time,
  so finding what is due never needs the states in memory. Every state record carries its due times in a
  small header (`flowline-due`, see `due_header`), so a restore indexes a record without decoding it.

Keys: `s<id>` the encoded state; `d<id>` its due header; `t<due:8><id>\\0<timer>` -> original fire_at:8 and
how often it was sent (a timer); `x<ended_at:8><id>` (a finished instance's retention); `m/...` the store's
own metadata, `m/consumed` among it: the partition's consumed input offsets, which the changelog carries
under `OFFSETS_KEY` (docs/adr/0013-consumed-offsets-in-the-state-changelog.md).
Index entries are only ever added; an entry that no longer matches its instance's `d` header (the timer
was cleared, re-armed, paused, or the instance is gone) is dropped when it comes due.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from rocksdict import DBCompressionType, Options, Rdict, WriteBatch, WriteOptions

from core.state import InstanceState
from schemas.codec import Codec, DecodeError

log = logging.getLogger(__name__)

DUE_HEADER = "flowline-due"
FORMAT = b"1"  # the layout of this module's keys; a store of another format is rebuilt

_STATE = b"s"
_DUE = b"d"
_TIMER = b"t"
_EXPIRE = b"x"
_OFFSET = b"m/offset"
_IDENTITY = b"m/identity"
_VERIFIED = b"m/verified-ms"
_FORMAT = b"m/format"
_CONSUMED = b"m/consumed"

# The changelog record that holds a partition's consumed input offsets, written in the same transaction as
# the states (ADR 13). Its key starts with a NUL byte, which no instance id has (they are `wfi_<hex>`,
# core.triggers.instance_id_for): every reader of the changelog tells it from a state with `is_offsets`.
OFFSETS_KEY = b"\x00flowline/consumed-offsets"


def is_offsets(key: bytes | None) -> bool:
    """Whether a changelog key is the consumed-offsets record rather than an instance's state."""
    return key == OFFSETS_KEY


def encode_offsets(offsets: dict[tuple[str, int], int]) -> bytes:
    """The offsets record's value: `[[topic, partition, next offset to read], ...]` as JSON (small, readable
    with any Kafka tool)."""
    return json.dumps(sorted([topic, partition, offset] for (topic, partition), offset in offsets.items()),
                      separators=(",", ":")).encode()


def decode_offsets(raw: bytes | None) -> dict[tuple[str, int], int]:
    return {(topic, partition): offset for topic, partition, offset in json.loads(raw)} if raw else {}


_ENTRY = b"\x1e"  # ASCII record separator, between the entries of a due header
_FIELD = b"\x1f"  # ASCII unit separator, between an entry's due time and its timer id


def due_header(state: InstanceState) -> bytes:
    """What is due for this state, as its changelog record's header: its armed timers and, once finished,
    when it ended (its retention runs from then). Entries `t<fire_at>\\x1f<timer id>` and `x<ended_at>`,
    separated by `\\x1e` (times in decimal): a restore parses a million of them, and JSON cost it seconds."""
    entries = [b"t%d%b%b" % (t.fire_at, _FIELD, t.timer_id.encode()) for t in state.armed_timers()]
    if state.is_terminal:
        entries.append(b"x%d" % state.updated_at)
    return _ENTRY.join(entries)


def parse_due(due: bytes) -> tuple[list[tuple[int, bytes]], int | None]:
    """(the armed timers as (fire_at, timer id), the end time if finished) of a due header."""
    timers: list[tuple[int, bytes]] = []
    ended = None
    if due:
        for entry in due.split(_ENTRY):
            if entry[:1] == b"t":
                fire_at, _, timer_id = entry[1:].partition(_FIELD)
                timers.append((int(fire_at), timer_id))
            elif entry[:1] == b"x":
                ended = int(entry[1:])
    return timers, ended


_NO_WAL = WriteOptions()
_NO_WAL.disable_wal = True


def _u64(n: int) -> bytes:
    return n.to_bytes(8, "big") if n > 0 else bytes(8)


@dataclass(frozen=True)
class Record:
    """One changelog record as the store takes it: the key, the encoded state (None: a tombstone) and its
    due header (None: a record written before headers existed, decoded once to find its due times)."""

    key: bytes
    value: bytes | None
    due: bytes | None


class PartitionStore:
    """One partition's states on disk. Not thread-safe: the engine's event loop is its only user."""

    def __init__(self, path: Path, codec: Codec, *, cache_size: int = 10_000) -> None:
        self.path = path
        self.codec = codec
        self.cache_size = cache_size
        self._cache: OrderedDict[str, InstanceState] = OrderedDict()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = self._open(path)

    @staticmethod
    def _open(path: Path) -> Rdict:
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        options.set_compression_type(DBCompressionType.lz4())  # encoded states compress well, cheaply
        # bounded memory per store, whatever the number of states: two 16 MB memtables (RocksDB's default is
        # 64 MB each) and the block cache's default 8 MB
        options.set_write_buffer_size(16 * 2**20)
        options.set_max_write_buffer_number(2)
        return Rdict(str(path), options)

    # ------------------------------------------------------------------ what the store is current to
    @property
    def offset(self) -> int | None:
        """The changelog offset to read from next: every record before it is in the store."""
        raw = self._db.get(_OFFSET)
        return int.from_bytes(raw, "big") if raw else None

    @property
    def identity(self) -> bytes | None:
        return self._db.get(_IDENTITY)

    @property
    def verified_ms(self) -> int:
        """When the store was last known to be current to its offset (wall clock, ms)."""
        raw = self._db.get(_VERIFIED)
        return int.from_bytes(raw, "big") if raw else 0

    @property
    def format(self) -> bytes | None:
        return self._db.get(_FORMAT)

    @property
    def consumed(self) -> dict[tuple[str, int], int]:
        """The partition's consumed input offsets ((topic, partition) -> next offset to read) as of the
        store's changelog offset: where its worker goes on reading (empty: the changelog has none yet)."""
        return decode_offsets(self._db.get(_CONSUMED))

    def stamp(self, identity: bytes, offset: int) -> None:
        """Record which changelog (cluster and topic) the store copies and that it is current to `offset`."""
        batch = WriteBatch(raw_mode=True)
        batch.put(_IDENTITY, identity)
        batch.put(_FORMAT, FORMAT)
        self._meta(batch, offset)
        self._db.write(batch)

    def verified(self) -> None:
        """The store is current to its offset as of now (called when the partition is handed over)."""
        self._db.put(_VERIFIED, _u64(int(time.time() * 1000)))

    @staticmethod
    def _meta(batch: WriteBatch, offset: int | None) -> None:
        if offset is not None:
            batch.put(_OFFSET, _u64(offset))
        batch.put(_VERIFIED, _u64(int(time.time() * 1000)))

    # ------------------------------------------------------------------ states
    def get(self, instance_id: str) -> InstanceState | None:
        state = self._cache.get(instance_id)
        if state is not None:
            self._cache.move_to_end(instance_id)
            return state
        raw = self._db.get(_STATE + instance_id.encode())
        if raw is None:
            return None
        try:
            state = self.codec.decode(raw)
        except DecodeError:  # as a restore from the changelog used to: the record is logged and skipped
            log.exception("the stored state of %s does not decode; it is treated as absent", instance_id)
            return None
        self._remember(instance_id, state)
        return state

    def __contains__(self, instance_id: object) -> bool:
        return isinstance(instance_id, str) and self._db.get(_STATE + instance_id.encode()) is not None

    def __bool__(self) -> bool:
        return True  # a store is a store, even an empty one (and truth must not scan it, as len() does)

    def __len__(self) -> int:
        """The number of states, by a scan of their keys (for tests and tools, not for a hot path)."""
        return sum(1 for _ in self.ids())

    def ids(self) -> Iterator[str]:
        for key in self._db.keys(from_key=_STATE):
            if not key.startswith(_STATE):
                break
            yield key[1:].decode()

    @property
    def cached(self) -> int:
        return len(self._cache)

    def _remember(self, instance_id: str, state: InstanceState) -> None:
        self._cache[instance_id] = state
        self._cache.move_to_end(instance_id)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def commit(self, changes: Iterable[tuple[str, InstanceState | None, bytes | None, bytes | None]],
               offset: int | None, consumed: bytes | None = None) -> None:
        """Write one committed batch: (instance id, its new state or None when forgotten, the encoded bytes
        the changelog got, their due header), the offsets record the changelog got (`consumed`, if any) and
        the changelog offset, in one write batch; then cache the decoded states (the disk has them first, so
        evicting one later loses nothing)."""
        batch = WriteBatch(raw_mode=True)
        decoded = []
        for instance_id, state, value, due in changes:
            key = instance_id.encode()
            self._put(batch, Record(key, value, due))
            decoded.append((instance_id, state))
        if consumed is not None:
            self._put(batch, Record(OFFSETS_KEY, consumed, None))
        self._meta(batch, offset)
        self._db.write(batch)
        for instance_id, state in decoded:
            if state is None:
                self._cache.pop(instance_id, None)
            else:
                self._remember(instance_id, state)

    def apply(self, records: Iterable[Record], offset: int) -> int:
        """Write changelog records as they are (a restore or a standby's copy), with the offset after them.

        Without RocksDB's write-ahead log: what a crash loses of these batches is a suffix (one column
        family's memtables are flushed in order), offset included, so the store is still consistent and
        the next start reads that suffix again; `flush` persists them when a restore is done."""
        batch = WriteBatch(raw_mode=True)
        count = 0
        cache = self._cache
        for record in records:
            self._put(batch, record)
            if cache:
                cache.pop(record.key.decode(), None)
            count += 1
        self._meta(batch, offset)
        self._db.write(batch, _NO_WAL)
        return count

    def flush(self) -> None:
        self._db.flush(True)

    def _put(self, batch: WriteBatch, record: Record) -> None:
        if is_offsets(record.key):  # not an instance: the partition's consumed offsets (ADR 13)
            if record.value is None:
                batch.delete(_CONSUMED)
            else:
                batch.put(_CONSUMED, record.value)
            return
        if record.value is None:
            batch.delete(_STATE + record.key)
            batch.delete(_DUE + record.key)
            return
        due = record.due
        if due is None:  # an older record without the header: decode it once to find its due times
            due = due_header(self.codec.decode(record.value))
        key = record.key
        batch.put(_STATE + key, record.value)
        batch.put(_DUE + key, due)
        if due:
            timers, ended = parse_due(due)
            for fire_at, timer_id in timers:
                when = _u64(fire_at)
                batch.put(_TIMER + when + key + b"\0" + timer_id, when)
            if ended is not None:
                batch.put(_EXPIRE + _u64(ended) + key, b"")

    # ------------------------------------------------------------------ due times
    def due_timers(self, now_ms: int, refire_after_ms: int = 30_000, limit: int = 5_000
                   ) -> list[tuple[str, str, int]]:
        """(instance id, timer id, fire_at) of up to `limit` armed timers due by `now_ms`.

        Each found entry moves to a refire time (if its FireTimer is lost, it is sent again then; the core
        rejects a duplicate): `refire_after_ms` later, doubling each round up to five minutes, so that a
        backlog (a hundred thousand timers due at once take the processor a while) is not flooded with
        copies of the commands it has yet to decide. An entry that no longer matches its instance's due
        header (the timer was decided, cleared, re-armed, paused, or the instance is gone) is dropped."""
        found: list[tuple[str, str, int]] = []
        batch = WriteBatch(raw_mode=True)
        headers: dict[bytes, set[tuple[int, bytes]]] = {}
        end = _TIMER + _u64(now_ms + 1)
        for key, value in self._db.items(from_key=_TIMER):
            if key >= end or len(found) >= limit:
                break
            instance_id, _, timer_id = key[9:].partition(b"\0")
            fire_at = int.from_bytes(value[:8], "big")
            rounds = value[8] if len(value) > 8 else 0
            armed = headers.get(instance_id)
            if armed is None:
                due = self._db.get(_DUE + instance_id)
                armed = set(parse_due(due)[0]) if due is not None else set()
                headers[instance_id] = armed
            batch.delete(key)
            if (fire_at, timer_id) in armed:
                found.append((instance_id.decode(), timer_id.decode(), fire_at))
                refire_at = now_ms + min(refire_after_ms << min(rounds, 16), 300_000)
                batch.put(_TIMER + _u64(refire_at) + instance_id + b"\0" + timer_id,
                          value[:8] + bytes([min(rounds + 1, 255)]))
        if not batch.is_empty():
            self._db.write(batch)
        return found

    def next_due(self) -> int | None:
        """The earliest due time in the timer index (stale entries included), if any."""
        for key in self._db.keys(from_key=_TIMER):
            return int.from_bytes(key[1:9], "big") if key.startswith(_TIMER) else None
        return None

    def expired(self, cutoff_ms: int, limit: int = 5_000) -> list[tuple[str, int]]:
        """(instance id, ended_at) of finished instances that ended by `cutoff_ms` and are still held."""
        found: list[tuple[str, int]] = []
        stale = WriteBatch(raw_mode=True)
        end = _EXPIRE + _u64(cutoff_ms + 1)
        for key in self._db.keys(from_key=_EXPIRE):
            if key >= end or len(found) >= limit:
                break
            ended_at = int.from_bytes(key[1:9], "big")
            instance_id = key[9:]
            due = self._db.get(_DUE + instance_id)
            if due is None or parse_due(due)[1] != ended_at:
                stale.delete(key)  # forgotten already, or changed since
                continue
            found.append((instance_id.decode(), ended_at))
        if not stale.is_empty():
            self._db.write(stale)
        return found

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        self._cache.clear()
        with contextlib.suppress(Exception):
            self._db.close()

    def wipe(self) -> None:
        """Throw the store away and start an empty one in its place (before a full restore)."""
        self.close()
        shutil.rmtree(self.path, ignore_errors=True)
        self._db = self._open(self.path)


class StateDir:
    """`<state dir>/<app id>/slot-<n>/p<partition>`, one slot per worker on this host.

    A worker takes the lowest slot whose lock it can get (an exclusive `flock`, which the kernel releases
    when the process dies, even by `kill -9`), so a worker restarted on the same disk finds its stores
    again, and two workers on one host (or in one process, in tests) never open the same store."""

    def __init__(self, root: Path, app_id: str, *, slots: int = 64) -> None:
        base = root / app_id
        base.mkdir(parents=True, exist_ok=True)
        for slot in range(slots):
            lock = (base / f"slot-{slot}.lock").open("a+b")
            try:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                lock.close()
                continue
            self._lock = lock
            self.path = base / f"slot-{slot}"
            self.path.mkdir(exist_ok=True)
            lock.truncate(0)
            lock.write(str(os.getpid()).encode())
            lock.flush()
            return
        raise RuntimeError(f"every one of the {slots} state slots under {base} is locked by a live worker")

    def partition(self, partition: int) -> Path:
        return self.path / f"p{partition}"

    def release(self) -> None:
        with contextlib.suppress(Exception):
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_UN)
            self._lock.close()
