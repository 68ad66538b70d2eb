"""State at scale (issue 15): restore time, memory and timer lateness with many waiting instances.

    .venv/bin/python bench/state_scale_bench.py [--instances 1000000] [--small 100000] [--timers 100000]

Uses the test-profile stack (started if needed) or $FLOWLINE_KAFKA_BOOTSTRAP, on fresh topics. Steps:

1. a real workflow run: `--real` procurement instances started through the engine until each waits for
   its approval; their changelog records are the engine's own encoded states;
2. the changelog is filled with waiting instances: copies of one real state with the instance id (and the
   timer ids that contain it) replaced by another id of the same length, so every record is a valid
   encoding by the real codec (checked by decoding a sample), with its due-times header;
3. at `--small` instances: the old path (today's dict: the whole changelog decoded into memory, the loop
   `InstanceProcessor._restore` ran before the on-disk store) and the new one (a fresh worker, its RocksDB
   stores empty) side by side: time to ready and resident memory;
4. at `--instances`: a fresh worker again (time, memory), then `kill -9` and a restart on the same disk
   (time, changelog records read: only the delta);
5. `--timers` instances whose approval timer is due in the same second, in a worker that holds all the
   rest too: the lateness of the fires the sweep sends (the broker timestamp of the `FireTimer` command, or
   of the `FiredTimers` record naming the timer, minus the due time) and of the events the engine then
   decides (StepTimedOut), the decision rate (timeouts decided per second, first to last) and the worker's
   CPU seconds meanwhile. `--only-timers` runs step 1 and this step only; `--engine-repo` runs the worker
   from another checkout (the code before a change, for a before/after in the same window); `--workers N`
   runs N workers sharing the partitions for this step.
6. `--decide N` (alone, no broker): the CPU of deciding N timeouts in `InstanceProcessor.process` on one
   partition store, `FiredTimers` records of 500 as the sweep sends them, transactions of at most
   `FIRE_CAP` fires as the processor makes them (the Kafka sends of the output are not in it);
   `--profile FILE` writes a cProfile of it (py-spy works on it too: it runs in one process).

Prints one table and writes bench/results/state_scale.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import replace
from pathlib import Path

import psutil
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.engine_bench import bootstrap_servers, create_topics  # noqa: E402
from core import events as ev  # noqa: E402
from core.builtin import builtin_template  # noqa: E402
from core.commands import DueTimer, FiredTimers, FireTimer, StartInstance  # noqa: E402
from core.state import InstanceState  # noqa: E402
from schemas import topics as topics_mod  # noqa: E402
from schemas.codec import Codec  # noqa: E402
from schemas.records import TemplateRecord  # noqa: E402
from streams.state_store import DUE_HEADER, due_header, is_offsets  # noqa: E402
from streams.transactional import partition_for  # noqa: E402

codec = Codec()
PARTITIONS = 4
REAL_ID = "wfi_real_000000000"  # every instance id has this length: a copy differs from the original only there


def synthetic_id(kind: str, n: int) -> str:
    return f"wfi_{kind}_{n:09d}"[: len(REAL_ID)].ljust(len(REAL_ID), "0")


def core_sample(fire_at_from: int | None = None) -> InstanceState:
    """A procurement instance waiting for its CFO approval, as the pure core decides it (no engine needed)."""
    from core.decide import decide
    from core.template import compile_template, parse_template
    from core.types import WorkflowStatus

    template = compile_template(parse_template(builtin_template("procurement_approval"), template_id="tpl_procurement",
                                               version=1, tenant_id="t1", status=WorkflowStatus.ACTIVE))
    command = StartInstance(command_id=f"start:{REAL_ID}", instance_id=REAL_ID, template_id="tpl_procurement",
                            template_version=1, tenant_id="t1",
                            trigger={"amount": 50_000, "currency": "USD", "metadata": {"type": "procurement"}})
    return decide(None, command, template, fire_at_from or int(time.time() * 1000)).state


async def fill_changelog(bootstrap: str, topic: str, partitions: int, sample: InstanceState, kind: str, start: int,
                         count: int) -> None:
    """Write `count` copies of `sample` into the changelog with ids `wfi_<kind>_<n>` (same length as the
    sample's: the copy differs only there, and stays a valid encoding), with their due-times header."""
    value, due = codec.encode(sample), due_header(sample)
    old = sample.instance_id.encode()
    check = synthetic_id(kind, start)
    copy = codec.decode(value.replace(old, check.encode()))
    assert copy.instance_id == check and all(check in t.timer_id for t in copy.timers), "not a valid copy"
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=50, max_batch_size=1024 * 1024,
                                acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for n in range(start, start + count):
            instance_id = synthetic_id(kind, n).encode()
            await producer.send(topic, value.replace(old, instance_id), key=instance_id,
                                partition=partition_for(instance_id, partitions),
                                headers=[(DUE_HEADER, due.replace(old, instance_id))])
            if n % 100_000 == 0 and n > start:
                print(f"  {n - start:,} of {count:,} written", flush=True)
        await producer.flush()
    finally:
        await producer.stop()


async def decide_cpu(count: int, profile: str = "") -> dict:
    """CPU seconds of deciding `count` timeouts in `InstanceProcessor.process`, without a broker: the states
    in a fresh partition store, the fires in `FiredTimers` records of `FIRE_BATCH`, fed to `process` as one
    lane batch after another (each batch's `on_commit` writes the store, as after a committed transaction);
    a batch's forwarded remainder (`FIRE_CAP`) is what the next one gets, as its records would be."""
    import cProfile
    import gc
    import tempfile
    from types import SimpleNamespace

    from core.template import compile_template, parse_template
    from core.types import WorkflowStatus
    from streams.app import GC_THRESHOLDS
    from streams.processor import FIRE_BATCH, InstanceProcessor
    from streams.settings import EngineSettings
    from streams.state_store import PartitionStore, Record

    gc.set_threshold(*GC_THRESHOLDS)
    template = compile_template(parse_template(builtin_template("procurement_approval"), template_id="tpl_procurement",
                                               version=1, tenant_id="t1", status=WorkflowStatus.ACTIVE))
    fire_at = int(time.time() * 1000) - 1000
    sample = core_sample(fire_at - 60_000)
    sample = replace(sample, timers=tuple(replace(t, fire_at=fire_at) for t in sample.timers))
    (timer,) = [t for t in sample.timers if t.purpose == "approval_timeout"]
    value, due = codec.encode(sample), due_header(sample)
    old = sample.instance_id.encode()
    settings = EngineSettings(bootstrap_servers="unused:9", partitions=1, app_id="decide-cpu")
    catalog = SimpleNamespace(get=lambda template_id, version: template)
    processor = InstanceProcessor(settings, catalog, codec)
    with tempfile.TemporaryDirectory() as root:
        store = processor.stores[0] = PartitionStore(Path(root) / "p0", codec, cache_size=2_000)
        ids = [synthetic_id("cpu", n) for n in range(count)]
        store.apply((Record(i.encode(), value.replace(old, i.encode()), due.replace(old, i.encode())) for i in ids), 1)
        offset = [0]

        def record(payload: bytes):
            offset[0] += 1
            return SimpleNamespace(topic=settings.commands_topic, partition=0, offset=offset[0], key=None,
                                   value=payload, timestamp=fire_at, headers=())

        pending = [record(codec.encode(FiredTimers(batch_id=f"0@{fire_at}:{n}", issued_at=fire_at, timers=tuple(
            DueTimer(instance_id=i, timer_id=timer.timer_id.replace(REAL_ID, i), fire_at=fire_at)
            for i in ids[n:n + FIRE_BATCH])))) for n in range(0, count, FIRE_BATCH)]
        out_records = transactions = 0
        profiler = cProfile.Profile() if profile else None
        rss_peak = 0
        began, cpu = time.perf_counter(), time.process_time()
        if profiler:
            profiler.enable()
        while pending:
            result = await processor.process(0, pending)
            transactions += 1
            out_records += len(result.records)
            pending = [record(o.value) for o in result.records if o.topic == settings.commands_topic]
            result.written = {(settings.changelog_topic, 0): offset[0]}
            result.on_commit()
            rss_peak = max(rss_peak, psutil.Process().memory_info().rss)
        if profiler:
            profiler.disable()
            profiler.dump_stats(profile)
        cpu = time.process_time() - cpu
        wall = time.perf_counter() - began
        decided = sum(1 for i in ids if not store.get(i).timers or store.get(i).timer(timer.timer_id) is None)
        store.close()
    return {"timeouts": count, "decided": decided, "cpu_s": round(cpu, 2), "wall_s": round(wall, 2),
            "us_per_timeout": round(cpu * 1e6 / count), "transactions": transactions,
            "records_out": out_records, "rss_peak_mb": round(rss_peak / 2**20),
            "load_average": os.getloadavg()}


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * p))], 1)


class Bench:
    def __init__(self, bootstrap: str, args) -> None:
        self.bootstrap = bootstrap
        self.args = args
        self.prefix = f"scale{uuid.uuid4().hex[:6]}."
        self.app_id = f"scale-{self.prefix.rstrip('.')}"
        self.logs = REPO / ".flowline" / "bench"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.state_root = self.logs / f"state-{self.prefix.rstrip('.')}"
        self.port = args.http_port
        self.results: dict = {"instances": args.instances, "small": args.small, "timers": args.timers,
                              "partitions": PARTITIONS}

    def topic(self, name: str) -> str:
        return self.prefix + name

    # ------------------------------------------------------------------ a worker
    def spawn(self, name: str, state_dir: Path, sweep_ms: int = 200, port: int | None = None) -> subprocess.Popen:
        env = {**os.environ, "PYTHONPATH": str(REPO), "FLOWLINE_KAFKA_BOOTSTRAP": self.bootstrap,
               "FLOWLINE_TOPIC_PREFIX": self.prefix, "FLOWLINE_PARTITIONS": str(PARTITIONS),
               "FLOWLINE_ENGINE_ID": self.app_id, "FLOWLINE_ENGINE_HTTP_PORT": str(port or self.port),
               "FLOWLINE_ENGINE_STATE_DIR": str(state_dir), "FLOWLINE_TIMER_SWEEP_MS": str(sweep_ms),
               "FLOWLINE_ENGINE_SESSION_TIMEOUT_MS": "6000"}
        log = (self.logs / f"state-scale-{name}-{Path(self.args.out).stem}.log").open("wb")
        engine = Path(self.args.engine_repo).resolve() if self.args.engine_repo else REPO
        env["PYTHONPATH"] = str(engine)
        return subprocess.Popen([sys.executable, "-m", "streams", "processor"], cwd=engine, env=env, stdout=log,
                                stderr=subprocess.STDOUT)

    def health(self, port: int | None = None) -> dict | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port or self.port}/health", timeout=2) as response:
                return json.loads(response.read())
        except Exception as exc:
            body = getattr(exc, "read", None)
            if body is not None:  # 503 while starting: the report is in the body
                try:
                    return json.loads(body())
                except Exception:
                    return None
            return None

    async def until_ready(self, proc: subprocess.Popen, timeout: float = 900, port: int | None = None) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError("the worker exited; see .flowline/bench/state-scale-*.log")
            report = await asyncio.to_thread(self.health, port)
            if report and report.get("status") == "ready" and report["partitions"].get("processor"):
                return report
            await asyncio.sleep(0.1)
        raise RuntimeError("the worker did not become ready")

    async def measure_worker(self, name: str, state_dir: Path) -> tuple[subprocess.Popen, dict]:
        started = time.perf_counter()
        proc = self.spawn(name, state_dir)
        report = await self.until_ready(proc)
        ready_s = time.perf_counter() - started
        await asyncio.sleep(2)  # let the heap settle (what a worker holds while idle and owning everything)
        rss = psutil.Process(proc.pid).memory_info().rss
        report = await asyncio.to_thread(self.health) or report
        return proc, {"ready_s": round(ready_s, 2), "restore_s": report.get("restore_seconds_total"),
                      "rss_mb": round(rss / 2**20, 1), "changelog_records_read": report["restore_reads"]}

    @staticmethod
    def stop(proc: subprocess.Popen, sig=signal.SIGTERM) -> None:
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    # ------------------------------------------------------------------ 1. the engine's own states
    async def real_states(self) -> InstanceState:
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5, enable_idempotence=True)
        await producer.start()
        doc = builtin_template("procurement_approval")
        record = TemplateRecord(template_id="tpl_procurement", version=1, tenant_id="t1", name=doc["name"],
                                status="ACTIVE", document=doc, updated_at=int(time.time() * 1000))
        await producer.send_and_wait(self.topic(topics_mod.WORKFLOW_TEMPLATES), codec.encode(record),
                                     key=b"tpl_procurement:1")
        ids = [synthetic_id("real", n) for n in range(self.args.real)]
        for instance_id in ids:
            await producer.send(self.topic(topics_mod.WORKFLOW_COMMANDS), codec.encode(StartInstance(
                command_id=f"start:{instance_id}", instance_id=instance_id, template_id="tpl_procurement",
                template_version=1, tenant_id="t1", trigger={"amount": 50_000, "currency": "USD",
                                                             "metadata": {"type": "procurement"}})),
                key=instance_id.encode())
        await producer.flush()
        await producer.stop()
        proc = self.spawn("real", self.state_root / "real")
        try:
            await self.until_ready(proc)
            waiting = await self.read_changelog_until(lambda found: sum(
                1 for s in found.values() if any(t.purpose == "approval_timeout" for t in s.timers)) >= len(ids))
        finally:
            self.stop(proc)
        sample = waiting[ids[0]]
        self.results["real_instances"] = len(ids)
        self.results["encoded_state_bytes"] = len(codec.encode(sample))
        print(f"real run: {len(ids)} procurement instances waiting for approval; one encoded state is "
              f"{self.results['encoded_state_bytes']} bytes", flush=True)
        return sample

    async def read_changelog_until(self, done, timeout: float = 180) -> dict[str, InstanceState]:
        consumer = AIOKafkaConsumer(self.topic(topics_mod.ENGINE_INSTANCES_CHANGELOG), bootstrap_servers=self.bootstrap,
                                    isolation_level="read_committed", auto_offset_reset="earliest")
        await consumer.start()
        found: dict[str, InstanceState] = {}
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    for record in records:
                        if record.value is not None and not is_offsets(record.key):
                            found[record.key.decode()] = codec.decode(record.value)
                if found and done(found):
                    return found
        finally:
            await consumer.stop()
        raise RuntimeError("the real instances did not all reach their approval in time")

    # ------------------------------------------------------------------ 2. fill the changelog
    async def fill(self, sample: InstanceState, kind: str, start: int, count: int, *,
                   fire_at: int | None = None) -> None:
        """Write `count` copies of the sample (ids `wfi_<kind>_<n>`) into the changelog, as the engine would."""
        if fire_at is not None:  # every copy's approval timer due at `fire_at`
            sample = replace(sample, timers=tuple(replace(t, fire_at=fire_at) for t in sample.timers))
        began = time.perf_counter()
        await fill_changelog(self.bootstrap, self.topic(topics_mod.ENGINE_INSTANCES_CHANGELOG), PARTITIONS, sample,
                             kind, start, count)
        print(f"filled {count:,} {kind} states in {time.perf_counter() - began:.1f} s", flush=True)

    # ------------------------------------------------------------------ 3. the old path, for the ratio
    def old_path(self) -> dict:
        """Today's dict: decode the whole changelog into memory (the loop `_restore` ran), in a child process."""
        code = f"""
import asyncio, json, sys, time, psutil
sys.path.insert(0, {str(REPO)!r})
from aiokafka import AIOKafkaConsumer, TopicPartition
from schemas.codec import Codec
codec = Codec()
async def main():
    began = time.perf_counter()
    consumer = AIOKafkaConsumer(bootstrap_servers={self.bootstrap!r}, enable_auto_commit=False,
                                isolation_level="read_committed", auto_offset_reset="earliest")
    await consumer.start()
    tps = [TopicPartition({self.topic(topics_mod.ENGINE_INSTANCES_CHANGELOG)!r}, p) for p in range({PARTITIONS})]
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    ends = await consumer.end_offsets(tps)
    states = {{p: {{}} for p in range({PARTITIONS})}}
    pending = {{tp for tp, end in ends.items() if end > 0}}
    while pending:
        for tp, records in (await consumer.getmany(*pending, timeout_ms=200, max_records=1000)).items():
            for record in records:
                if record.value is None:
                    states[tp.partition].pop(record.key.decode(), None)
                else:
                    states[tp.partition][record.key.decode()] = codec.decode(record.value)
            await asyncio.sleep(0)
        for tp in list(pending):
            if await consumer.position(tp) >= ends[tp]:
                pending.discard(tp)
    await consumer.stop()
    took = time.perf_counter() - began
    print(json.dumps({{"restore_s": round(took, 2), "instances": sum(len(s) for s in states.values()),
                      "rss_mb": round(psutil.Process().memory_info().rss / 2**20, 1)}}))
asyncio.run(main())
"""
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    # ------------------------------------------------------------------ 5. timers
    async def timers(self, sample: InstanceState) -> dict:
        """`--timers` instances all due in one second; the worker restarts on its disk (reads them as the
        delta), then the sweep fires them. Lateness = broker timestamp of FireTimer (and of the events
        decided from it) minus the due time."""
        lead = self.args.timer_lead
        fire_at = int(time.time() * 1000) + lead * 1000
        await self.fill(sample, "tmr", 0, self.args.timers, fire_at=fire_at)
        fired: dict[str, float] = {}  # the first FireTimer of each instance (a refire is not counted again)
        decided: dict[str, float] = {}
        rejected = [0]
        commands = AIOKafkaConsumer(self.topic(topics_mod.WORKFLOW_COMMANDS), bootstrap_servers=self.bootstrap,
                                    isolation_level="read_committed", auto_offset_reset="latest")
        events = AIOKafkaConsumer(self.topic(topics_mod.WORKFLOW_EVENTS), bootstrap_servers=self.bootstrap,
                                  isolation_level="read_committed", auto_offset_reset="latest")
        await commands.start()
        await events.start()

        peak = [0]  # the worker's largest RSS seen while the burst is fired and decided

        timeline: list[tuple[float, float]] = []  # (seconds from the due time, the worker's RSS in MB)

        async def read_events(timeout_ms: int) -> None:
            rss_now = psutil.Process(proc.pid).memory_info().rss
            peak[0] = max(peak[0], rss_now)
            at = round(time.time() - fire_at / 1000, 1)
            if not timeline or at - timeline[-1][0] >= 2:
                timeline.append((at, round(rss_now / 2**20)))
            for records in (await events.getmany(timeout_ms=timeout_ms, max_records=10_000)).values():
                for record in records:
                    event = codec.decode(record.value)
                    if isinstance(event, ev.StepTimedOut) and event.instance_id.startswith("wfi_tmr"):
                        decided.setdefault(event.instance_id, record.timestamp - fire_at)
                    elif isinstance(event, ev.InstanceStarted) and event.instance_id in probes:
                        probed.setdefault(event.instance_id, record.timestamp - probes[event.instance_id])
                    elif isinstance(event, ev.CommandRejected) and event.instance_id.startswith("wfi_tmr"):
                        rejected[0] += 1  # a fire sent again (a refire) and refused by the instance

        proc, worker = await self.measure_worker("timers", self.state_root / "main")
        others = []  # `--workers` > 1: more engine workers share the partitions (each with a disk of its own)
        for n in range(1, self.args.workers):
            others.append(self.spawn(f"timers-w{n}", self.state_root / f"worker-{n}", port=self.port + n))
        for n, other in enumerate(others, 1):
            await self.until_ready(other, port=self.port + n)
        procs = [proc, *others]

        def cpu_seconds() -> float:
            return sum(sum(psutil.Process(p.pid).cpu_times()[:2]) for p in procs)

        # other commands during the burst: starts of new instances on every partition, 2 s after the due time;
        # how long each waits for its InstanceStarted (behind the burst's transactions) is `probe_ms`
        probes: dict[str, float] = {}
        probed: dict[str, float] = {}

        async def probe() -> None:
            await asyncio.sleep(max(fire_at + 2_000 - time.time() * 1000, 0) / 1000)
            producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, enable_idempotence=True)
            await producer.start()
            try:
                for n in range(20):
                    instance_id = synthetic_id("prb", n)
                    probes[instance_id] = time.time() * 1000
                    await producer.send_and_wait(self.topic(topics_mod.WORKFLOW_COMMANDS), codec.encode(StartInstance(
                        command_id=f"start:{instance_id}", instance_id=instance_id, template_id="tpl_procurement",
                        template_version=1, tenant_id="t1", trigger={"amount": 50_000, "currency": "USD",
                                                                     "metadata": {"type": "procurement"}})),
                        key=instance_id.encode())
            finally:
                await producer.stop()

        prober = asyncio.create_task(probe())
        ready_before_due = time.time() * 1000 < fire_at
        await asyncio.sleep(max(fire_at - time.time() * 1000 - 2_000, 0) / 1000)
        cpu_at_due = cpu_seconds()  # the workers' CPU from 2 s before the due time to the end
        try:
            deadline = time.monotonic() + lead + 300
            while time.monotonic() < deadline and len(fired) < self.args.timers:
                for records in (await commands.getmany(timeout_ms=200, max_records=10_000)).values():
                    for record in records:
                        command = codec.decode(record.value)
                        named = ([command.instance_id] if isinstance(command, FireTimer) else
                                 [t.instance_id for t in command.timers] if isinstance(command, FiredTimers) else [])
                        for instance_id in named:
                            if instance_id.startswith("wfi_tmr"):
                                fired.setdefault(instance_id, record.timestamp - fire_at)
                await read_events(10)
            # the engine decides them at its own pace: give it a while, then count what it did
            settle = time.monotonic() + self.args.timer_settle
            while time.monotonic() < settle and (len(decided) < self.args.timers or len(probed) < len(probes)):
                await read_events(500)
            await prober
            rss = psutil.Process(proc.pid).memory_info().rss
            cpu_s = round(cpu_seconds() - cpu_at_due, 1)
        finally:
            for p in procs:
                self.stop(p)
            await commands.stop()
            await events.stop()
        spread = list(decided.values())
        return {"count": self.args.timers, "worker_ready_before_due": ready_before_due,
                "restart_read": worker["changelog_records_read"],
                "fired": len(fired), "fire_lateness_ms_p50": percentile(list(fired.values()), 0.5),
                "fire_lateness_ms_p99": percentile(list(fired.values()), 0.99),
                "fire_lateness_ms_max": percentile(list(fired.values()), 1.0),
                "rejected_copies": rejected[0],
                "decided": len(decided), "decided_lateness_ms_p50": percentile(list(decided.values()), 0.5),
                "decided_lateness_ms_p99": percentile(list(decided.values()), 0.99),
                # timeouts decided per second, from the due time to the last one seen
                "decided_per_s": round(len(decided) * 1000 / max(max(spread), 1)) if spread else None,
                "workers": self.args.workers, "worker_cpu_s": cpu_s, "engine_repo": self.args.engine_repo or ".",
                "load_average": os.getloadavg(), "rss_mb_after": round(rss / 2**20, 1),
                "rss_mb_peak": round(max(peak[0], rss) / 2**20, 1),
                "probe_ms_p50": percentile(list(probed.values()), 0.5), "probe_ms_max": percentile(
                    list(probed.values()), 1.0), "probes_started": len(probed), "rss_mb_ready": worker["rss_mb"],
                "rss_mb_timeline": timeline}

    # ------------------------------------------------------------------ the run
    async def run(self) -> dict:
        await create_topics(self.bootstrap, self.prefix, PARTITIONS)
        sample = await self.real_states()
        if self.args.only_timers:
            self.results["timers"] = await self.timers(sample)
            print(f"{self.args.timers:,} timers due in one second: {self.results['timers']}", flush=True)
            return self.results
        small, total = self.args.small, self.args.instances
        await self.fill(sample, "wait", 0, small)
        print("old path (every state decoded into a dict) ...", flush=True)
        self.results["old_dict_at_small"] = self.old_path()
        proc, self.results["new_fresh_at_small"] = await self.measure_worker("fresh-small", self.state_root / "small")
        self.stop(proc, signal.SIGKILL)
        proc, self.results["new_after_kill9_at_small"] = await self.measure_worker("restart-small",
                                                                                   self.state_root / "small")
        self.stop(proc)
        print(f"at {small:,}: old {self.results['old_dict_at_small']}, new {self.results['new_fresh_at_small']}",
              flush=True)
        if total > small:
            await self.fill(sample, "wait", small, total - small)
        proc, self.results["new_fresh_at_total"] = await self.measure_worker("fresh-total", self.state_root / "main")
        print(f"at {total:,}, fresh worker: {self.results['new_fresh_at_total']}", flush=True)
        self.stop(proc, signal.SIGKILL)
        proc, self.results["new_after_kill9_at_total"] = await self.measure_worker("restart", self.state_root / "main")
        print(f"at {total:,}, after kill -9 on the same disk: {self.results['new_after_kill9_at_total']}", flush=True)
        self.stop(proc)
        if self.args.timers:
            self.results["timers"] = await self.timers(sample)
            print(f"{self.args.timers:,} timers due in one second: {self.results['timers']}", flush=True)
        return self.results


def timer_lines(t: dict) -> list[str]:
    return [f"| {t['count']:,} timers due in one second: fire lateness p50/p99/max ms | | "
            f"{t['fire_lateness_ms_p50']}/{t['fire_lateness_ms_p99']}/{t['fire_lateness_ms_max']} "
            f"({t['fired']} fired) | |",
            f"| ... their StepTimedOut event lateness p50/p99 ms | | {t['decided_lateness_ms_p50']}/"
            f"{t['decided_lateness_ms_p99']} ({t['decided']} decided, {t.get('decided_per_s')}/s, "
            f"{t.get('workers', 1)} worker(s) {t.get('worker_cpu_s')} CPU-s, RSS peak {t.get('rss_mb_peak')} MB) | |"]


def table(r: dict) -> str:
    if "old_dict_at_small" not in r:
        return "\n".join(timer_lines(r["timers"]))
    old, small, small_kill, fresh, kill = (r["old_dict_at_small"], r["new_fresh_at_small"],
                                           r["new_after_kill9_at_small"], r["new_fresh_at_total"],
                                           r["new_after_kill9_at_total"])
    lines = [
        "| measure | before (dict) | after (RocksDB store) | ratio |",
        "|---|---|---|---|",
        f"| restore {r['small']:,} waiting instances into a fresh worker, s | {old['restore_s']} | "
        f"{small['restore_s']} (process start to ready: {small['ready_s']}) | "
        f"{old['restore_s'] / small['restore_s']:.1f}x |",
        f"| worker RSS holding {r['small']:,}, MB | {old['rss_mb']} | {small['rss_mb']} after the restore, "
        f"{small_kill['rss_mb']} after a restart | {old['rss_mb'] / small_kill['rss_mb']:.1f}x |",
        f"| restore {r['instances']:,} into a fresh worker, s | (not run: "
        f"~{old['restore_s'] * r['instances'] / r['small']:.0f} by extrapolation) | {fresh['restore_s']} "
        f"(process start to ready: {fresh['ready_s']}) | |",
        f"| worker RSS holding {r['instances']:,}, MB | (~{old['rss_mb'] * r['instances'] / r['small']:.0f} by "
        f"extrapolation) | {fresh['rss_mb']} after the restore, {kill['rss_mb']} after a restart | |",
        f"| restart after kill -9 holding {r['instances']:,} (same disk): restore s, records read | | "
        f"{kill['restore_s']}, {sum(kill['changelog_records_read'].values())} (process start to ready: "
        f"{kill['ready_s']}, of which the dead member's session timeout) | |",
    ]
    if isinstance(r.get("timers"), dict):
        lines += timer_lines(r["timers"])
    return "\n".join(lines)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--instances", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=100_000, help="where the old path is measured too")
    parser.add_argument("--timers", type=int, default=100_000)
    parser.add_argument("--real", type=int, default=200, help="real procurement instances run through the engine")
    parser.add_argument("--timer-lead", type=int, default=60, help="seconds from writing the timers to their due time")
    parser.add_argument("--timer-settle", type=int, default=120, help="seconds to wait for the engine's decisions")
    parser.add_argument("--only-timers", action="store_true", help="the real run and the timers only")
    parser.add_argument("--workers", type=int, default=1, help="engine workers sharing the partitions (timers)")
    parser.add_argument("--engine-repo", default="", help="run the engine worker from this checkout")
    parser.add_argument("--out", default="state_scale.json", help="file name under bench/results")
    parser.add_argument("--http-port", type=int, default=int(os.environ.get("FLOWLINE_GATEWAY_PORT", "28700")) + 9)
    parser.add_argument("--decide", type=int, default=0, help="only the CPU of deciding this many timeouts "
                                                                  "(no broker)")
    parser.add_argument("--profile", default="", help="with --decide: write a cProfile of it to this file")
    args = parser.parse_args()
    if args.decide:
        print(json.dumps(await decide_cpu(args.decide, args.profile)))
        return
    bench = Bench(bootstrap_servers(), args)
    results = await bench.run()
    out = REPO / "bench" / "results" / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(f"written to {out.relative_to(REPO)}")


def print_table(path: str = "bench/results/state_scale.json") -> None:
    """The table of a run written before (`python -c 'from bench.state_scale_bench import print_table; ...'`)."""
    print(table(json.loads((REPO / path).read_text())))


if __name__ == "__main__":
    asyncio.run(main())
