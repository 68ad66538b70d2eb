"""Where the milliseconds of one workflow go, hop by hop (issue 15), on a running stack.

    source your ports; deploy/stack up --profile test
    .venv/bin/python -m bench.hops [--workload short|procurement] [--workflows 300] [--in-flight 16] [--pause 0]

It drives the peers instrument's two workloads (`../shared/peers/`, same templates) as a closed loop with
`--in-flight` workflows at once: a JSON transfer event on `payments.transfers`, the end seen on
`workflow.events` (read_committed), approvals through the gateway the moment `ApprovalRequested` is seen.
Afterwards it reads back every record the run produced on each topic of the path and lines them up per
instance by their timestamps (the producer's create time: when the process that wrote the record handed
it to its producer). The gap between two hops is therefore "commit + read_committed visibility + fetch +
queueing + work" of the next process; the table says which process owns each gap, so a wait shows up
where it is.

A start decided inline (the default, docs/adr/0014) writes no `StartInstance`: its first hop is transfer ->
first step request (one engine transaction); through the matcher (`FLOWLINE_ENGINE_INLINE_START=off`) it is
transfer -> `StartInstance` -> first step request (two).

`--rate N --duration S` drives an open loop instead: workflow n starts at N per second from the start,
whatever the others do (how a spec's "at 90 % of the maximum rate" is meant: arrivals do not wait for
completions), and the report adds each step's latency: from the record that made the step runnable (the
transfer for step 1, else the previous step's result event, or for an approval the approver's
`RecordDecision` if later) to the step's own result event (`StepSucceeded`, `ConditionEvaluated`,
`StepApproved`, ...; a step skipped over is left out), all broker timestamps. The closed loop at a high
`--in-flight` gives the maximum rate to take 90 % of.

Why record timestamps and not log lines: every process already stamps what it writes, the broker keeps
it, and reading it back changes nothing on the path being measured.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import time
import uuid
from collections import defaultdict
from pathlib import Path

import aiohttp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.idle_bench import REPO, stack_pids, tree_cpu
from core import commands as cmd
from core import events as ev
from core.effects import StepRequest
from schemas.codec import Codec
from schemas.records import PaymentCommand, PaymentResult

ADMIN, CFO, MANAGER = "fl_dev_acme_admin", "fl_dev_alice_cfo", "fl_dev_bob_manager"
TOPICS = ("payments.transfers", "workflow.commands", "workflow.steps.action", "workflow.steps.approval",
          "payments.commands", "payments.results", "workflow.step-results", "workflow.events")


def template(workload: str, tag: str) -> dict:
    execute = {"type": "action", "name": "Execute Transfer",
               "config": {"action": "execute_transfer", "params": {"transfer_id": "{{trigger.id}}"}}}
    if workload == "short":
        steps = [{"type": "condition", "name": "Large Amount",
                  "config": {"expression": "trigger.amount > 1000", "if_true": "continue", "if_false": "continue"}},
                 execute]
    else:
        steps = [{"type": "condition", "name": "Check Amount Tier",
                  "config": {"expression": "trigger.amount <= 1000", "if_true": "skip_to:3", "if_false": "continue"}},
                 {"type": "approval", "name": "CFO Approval",
                  "config": {"approvers": {"type": "role", "value": "cfo"}}},
                 {"type": "approval", "name": "Manager Approval",
                  "config": {"approvers": {"type": "role", "value": "finance_manager"}}},
                 execute]
    return {"name": f"hops {workload} {tag}", "trigger_type": "on_transfer",
            "trigger_config": {"conditions": [{"field": "metadata.type", "op": "eq", "value": tag}]}, "steps": steps}


# the events that end a step (its result, in the sense of the spec's "per step" latency; a condition ends with
# its evaluation; a step skipped over by `skip_to` never ran and is left out)
STEP_RESULTS = (ev.StepSucceeded, ev.ConditionEvaluated, ev.StepApproved, ev.StepRejected, ev.StepFailed,
                ev.StepTimedOut)


def step_latencies(stamps: dict, steps: int) -> dict[int, list[float]]:
    """Per step: from the record that made it runnable (the transfer for step 1, else the previous step's
    result, or the approver's RecordDecision when that came later) to its own result event, in ms."""
    found: dict[int, list[float]] = defaultdict(list)
    for hop in stamps.values():
        previous = hop.get("transfer")
        for step in range(1, steps + 1):
            done = hop.get(f"step_done{step}")
            if done is None or previous is None:
                continue  # skipped over (`skip_to`) without a result of its own, or not finished
            runnable = max(previous, hop.get(f"decision{step}", previous))
            found[step].append(done - runnable)
            previous = done
    return found


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))] if values else float("nan")


class Driver:
    def __init__(self, bootstrap: str, api: str, workload: str) -> None:
        self.bootstrap, self.api, self.workload = bootstrap, api, workload
        self.codec = Codec.from_env()
        self.tag = f"hops-{uuid.uuid4().hex[:8]}"
        self.done: dict[str, asyncio.Future] = {}
        self.seen: dict[tuple[str, str], float] = {}  # (instance id, what) -> when the driver saw it (epoch ms)
        self.sent: dict[tuple[str, int], float] = {}  # (instance id, step) -> approve POST sent (epoch ms)
        self.answered: dict[tuple[str, int], float] = {}  # (instance id, step) -> its 202 received (epoch ms)
        self.wid_of: dict[str, str] = {}
        # called right before the first transfer and right after the last workflow ended (bench/cpu_bench.py
        # reads every process's CPU there, so the set-up and the read-back are not counted)
        self.before_load = self.after_load = lambda: None

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=500)
            now = time.time() * 1000
            for records in batches.values():
                for r in records:
                    try:
                        e = self.codec.decode(r.value)
                    except Exception:
                        continue
                    iid = getattr(e, "instance_id", None)
                    if isinstance(e, ev.InstanceStarted):
                        self.wid_of[iid] = e.trigger.get("id") or ""
                    wid = self.wid_of.get(iid)
                    if wid is None:
                        continue
                    if isinstance(e, ev.ApprovalRequested):
                        self.seen[(iid, f"announce{e.step}")] = now
                        asyncio.get_running_loop().create_task(self._approve(iid, e.step, e.approvers))
                    elif isinstance(e, ev.InstanceCompleted | ev.InstanceFailed | ev.InstanceCancelled):
                        self.seen[(iid, "end")] = now
                        fut = self.done.get(wid)
                        if fut is not None and not fut.done():
                            fut.set_result(type(e).__name__)

    async def _approve(self, iid: str, step: int, approvers) -> None:
        token = CFO if "cfo" in json.dumps(approvers) else MANAGER
        url = f"{self.api}/v1/workflows/instances/{iid}/steps/{step}/approve"
        for _ in range(100):
            self.sent[(iid, step)] = time.time() * 1000
            async with self.http.post(url, json={"reasoning": "hops"},
                                      headers={"Authorization": f"Bearer {token}"}) as resp:
                await resp.read()
                if resp.status != 404:
                    self.answered[(iid, step)] = time.time() * 1000
                    return
            await asyncio.sleep(0.05)

    async def run(self, workflows: int, in_flight: int, pause: float = 0.0, rate: float = 0.0) -> dict:
        self.http = aiohttp.ClientSession()
        async with self.http.post(f"{self.api}/v1/workflows/templates", json=template(self.workload, self.tag),
                                  headers={"Authorization": f"Bearer {ADMIN}"}) as resp:
            body = await resp.json()
            assert resp.status == 201, body
        consumer = AIOKafkaConsumer("workflow.events", bootstrap_servers=self.bootstrap, group_id=None,
                                    isolation_level="read_committed", auto_offset_reset="latest")
        await consumer.start()
        while not consumer.assignment():
            await asyncio.sleep(0.05)
        for tp in consumer.assignment():
            await consumer.position(tp)
        start_offsets = {}
        probe = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None)
        await probe.start()
        tps = [TopicPartition(t, p) for t in TOPICS for p in (probe.partitions_for_topic(t) or
                                                                 (await probe._client.fetch_all_metadata())
                                                                 .partitions_for_topic(t) or ())]
        start_offsets = await probe.end_offsets(tps)
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, enable_idempotence=True)
        await producer.start()
        task = asyncio.create_task(self._consume(consumer))
        await asyncio.sleep(2)  # the engine's catalog learns the template
        gate = asyncio.Semaphore(in_flight)
        started: dict[str, float] = {}

        def transfer(n: int) -> tuple[str, bytes]:
            """Workflow n's id and transfer event (every other one over the CFO threshold); its future waits."""
            wid = f"{self.tag}-{n}"
            self.done[wid] = asyncio.get_running_loop().create_future()
            amount = 5000 if n % 2 else 500
            event = {"event_id": wid, "transfer_id": wid, "tenant_id": "acme", "amount_minor": amount * 100,
                     "currency": "USD", "metadata": {"type": self.tag}}
            return wid, json.dumps(event).encode()

        async def one(n: int) -> None:
            async with gate:
                if pause:  # the stack sits idle this long before each workflow (first record after idle)
                    await asyncio.sleep(pause)
                wid, event = transfer(n)
                started[wid] = time.time() * 1000
                await producer.send_and_wait("payments.transfers", event, key=wid.encode())
                await asyncio.wait_for(self.done[wid], 60)

        async def paced(n: int, at: float) -> None:
            """Open loop: workflow n starts at its own time, whatever the others do."""
            await asyncio.sleep(max(at - time.time(), 0))
            wid, event = transfer(n)
            started[wid] = time.time() * 1000
            late.append(started[wid] - at * 1000)
            await producer.send("payments.transfers", event, key=wid.encode())
            with contextlib.suppress(TimeoutError):  # not finished within a minute: counted as not done
                await asyncio.wait_for(self.done[wid], 60)

        late: list[float] = []  # open loop: how much later than its schedule each transfer was handed over
        self.before_load()
        began = time.time()
        if rate:
            await asyncio.gather(*(paced(n, began + n / rate) for n in range(workflows)))
        else:
            await asyncio.gather(*(one(n) for n in range(workflows)))
        elapsed = time.time() - began
        self.after_load()
        task.cancel()
        await consumer.stop()
        await producer.stop()
        await self.http.close()
        hops = await self._read_back(probe, start_offsets)
        await probe.stop()
        finished = sum(1 for f in self.done.values() if f.done())
        return {"elapsed": elapsed, "rate": workflows / elapsed, "hops": hops, "started": started,
                "offered_rate": rate, "finished": finished, "schedule_late_ms_p99": pct(late, .99) if late else None}

    async def _read_back(self, probe: AIOKafkaConsumer, start: dict) -> dict:
        ends = await probe.end_offsets(list(start))
        stamps: dict[str, dict[str, float]] = defaultdict(dict)  # instance id -> hop -> ms
        iid_of_wid = {w: i for i, w in self.wid_of.items()}
        reader = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None, isolation_level="read_committed")
        await reader.start()
        todo = [tp for tp in start if ends[tp] > start[tp]]
        reader.assign(todo)
        for tp in todo:
            reader.seek(tp, start[tp])
        remaining = {tp: ends[tp] for tp in todo}
        while remaining:
            batches = await reader.getmany(timeout_ms=1000)
            if not batches:
                break
            for tp, records in batches.items():
                for r in records:
                    if r.offset + 1 >= remaining.get(tp, 0):
                        remaining.pop(tp, None)
                    self._stamp(tp.topic, r, stamps, iid_of_wid)
        await reader.stop()
        return stamps

    def _stamp(self, topic: str, r, stamps, iid_of_wid) -> None:
        def put(iid, name):
            if iid in self.wid_of:
                stamps[iid].setdefault(name, r.timestamp)

        if topic == "payments.transfers":
            iid = iid_of_wid.get(r.key.decode() if r.key else "")
            if iid:
                put(iid, "transfer")
            return
        try:
            v = self.codec.decode(r.value)
        except Exception:
            v = None
        if topic == "workflow.commands":
            if isinstance(v, cmd.StartInstance):
                put(v.instance_id, "start_cmd")
            elif isinstance(v, cmd.RecordDecision):
                put(v.instance_id, f"decision{v.step}")
        elif topic.startswith("workflow.steps."):
            if isinstance(v, StepRequest):
                put(v.instance_id, f"request{v.step}")
        elif topic in ("payments.commands", "payments.results"):
            if isinstance(v, PaymentCommand | PaymentResult):
                put(v.idempotency_key.rsplit(":", 2)[0], "pay_cmd" if topic == "payments.commands" else "pay_res")
        elif topic == "workflow.step-results":
            if isinstance(v, cmd.ReportStepResult | cmd.RecordPaymentResult):  # a handler's, or the relay's
                put(v.instance_id, f"result{v.step}")
        elif topic == "workflow.events":
            if isinstance(v, ev.InstanceStarted):
                put(v.instance_id, "started_evt")
            elif isinstance(v, ev.ApprovalRequested):
                put(v.instance_id, f"announce_evt{v.step}")
            elif isinstance(v, ev.InstanceCompleted):
                put(v.instance_id, "end_evt")
            if isinstance(v, STEP_RESULTS):
                put(v.instance_id, f"step_done{v.step}")


def report(driver: Driver, out: dict) -> None:
    stamps = out["hops"]
    rows: dict[str, list[float]] = defaultdict(list)
    # Started inline (docs/adr/0014) there is no StartInstance on workflow.commands: the processor that
    # consumes the transfer writes the first step request in the same transaction. Through the matcher
    # (FLOWLINE_ENGINE_INLINE_START=off) the start travels through workflow.commands first.
    first_hops = {
        "inline": [("transfer", "request2", "processor: transfer visible + fetched + matched + started")],
        # the engine orders the payment itself (docs/adr/0023): no step request, the order is the first output
        "ordered": [("transfer", "pay_cmd", "processor: transfer visible + fetched + matched + payment ordered")],
        "matcher": [("transfer", "start_cmd", "matcher: transfer visible + fetched + matched"),
                    ("start_cmd", "request2", "processor: matcher's txn + StartInstance processed")],
    }
    chains = {
        "short": [("request2", "pay_cmd", "action handler: processor's txn + request fetched"),
                  ("pay_cmd", "pay_res", "simulator: command visible + ledger + answer"),
                  ("pay_res", "result2", "action handler (relay): payment result fetched -> its command"),
                  ("result2", "end_evt", "processor: step result fetched + processed"),
                  ("end_evt", "end_seen", "driver: processor's txn committed + visible")],
    }
    for iid, hop in stamps.items():
        hop = dict(hop)
        if (iid, "end") in driver.seen:
            hop["end_seen"] = driver.seen[(iid, "end")]
        for step in (2, 3):
            if (iid, step) in driver.sent:
                hop[f"sent{step}"] = driver.sent[(iid, step)]
            if (iid, step) in driver.answered:
                hop[f"answered{step}"] = driver.answered[(iid, step)]
            if (iid, f"announce{step}") in driver.seen:
                hop[f"announce_seen{step}"] = driver.seen[(iid, f"announce{step}")]
        if "transfer" in hop and "end_seen" in hop:
            rows["e2e (transfer produced -> end seen)"].append(hop["end_seen"] - hop["transfer"])
        if "transfer" in hop and "started_evt" in hop:
            rows["transfer -> InstanceStarted written (the start's engine transactions)"].append(
                hop["started_evt"] - hop["transfer"])
        if driver.workload == "short":
            path = "matcher" if "start_cmd" in hop else "inline" if "request2" in hop else "ordered"
            for a, b, label in first_hops[path] + chains["short"]:
                if a in hop and b in hop:
                    rows[f"{a} -> {b}: {label}"].append(hop[b] - hop[a])
        # an approval: POST sent -> the gateway's RecordDecision -> the engine's next request -> seen
        for step, nxt in ((2, "announce_evt3"), (3, "request4")):
            if f"sent{step}" in hop and f"decision{step}" in hop:
                rows[f"approval {step}: POST sent -> RecordDecision produced (gateway)"].append(
                    hop[f"decision{step}"] - hop[f"sent{step}"])
            if f"decision{step}" in hop and nxt in hop:
                rows[f"approval {step}: RecordDecision -> {nxt} produced (engine: visible, lane, process)"].append(
                    hop[nxt] - hop[f"decision{step}"])
            if f"sent{step}" in hop and f"answered{step}" in hop:
                rows[f"approval {step}: POST sent -> 202 received (gateway: produce acknowledged, read-model lookup)"
                     ].append(hop[f"answered{step}"] - hop[f"sent{step}"])
        # the Manager's approval as the peers instrument measures it: POST sent -> the simulator's ledger
        # entry (its answer on payments.results is written right after the entry, in the same batch)
        for a, b, label in (("request4", "pay_cmd", "action handler: processor's txn + request fetched"),
                            ("decision3", "pay_cmd", "engine: visible, lane, process, payment ordered (ADR 23)"),
                            ("pay_cmd", "pay_res", "simulator: command visible + ledger + answer")):
            if "sent3" in hop and a in hop and b in hop:
                rows[f"approval 3: {a} -> {b}: {label}"].append(hop[b] - hop[a])
        if "sent3" in hop and "pay_res" in hop:
            rows["approval 3 latency (POST sent -> payment answered, ~ the ledger entry)"].append(
                hop["pay_res"] - hop["sent3"])
        if "announce_evt3" in hop and "announce_seen3" in hop:
            rows["approval 2: ApprovalRequested produced -> seen (engine's commit + visibility)"].append(
                hop["announce_seen3"] - hop["announce_evt3"])
        if "sent2" in hop and "announce_seen3" in hop:
            rows["approval 2 latency (POST sent -> next ApprovalRequested seen)"].append(
                hop["announce_seen3"] - hop["sent2"])
            if "decision2" in hop:  # what the engine's transaction (and the wait for its lane) is of it
                rows["approval 2: engine's share, % (RecordDecision produced -> ApprovalRequested seen)"].append(
                    100 * (hop["announce_seen3"] - hop["decision2"]) / max(1e-9, hop["announce_seen3"] - hop["sent2"]))
    print(f"{driver.workload}: {len(stamps)} workflows, {out['rate']:.1f} wf/s, load average "
          f"{os.getloadavg()[0]:.2f}")
    if out.get("offered_rate"):
        print(f"open loop: offered {out['offered_rate']:.1f} wf/s, {out['finished']} of {len(out['started'])} "
              f"finished within 60 s each, the driver's own lateness p99 {out['schedule_late_ms_p99']:.1f} ms")
        names = [step["name"] for step in template(driver.workload, "")["steps"]]
        for step, values in step_latencies(stamps, len(names)).items():
            rows[f"step {step} ({names[step - 1]}): runnable -> result"] = values
    print(f"{'hop':96s} {'n':>5s} {'p50':>7s} {'p90':>7s} {'p99':>7s}")
    for name, values in rows.items():
        print(f"{name:96s} {len(values):5d} {statistics.median(values):7.1f} {pct(values, .9):7.1f} "
              f"{pct(values, .99):7.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=("short", "procurement"), default="short")
    parser.add_argument("--workflows", type=int, default=300)
    parser.add_argument("--in-flight", type=int, default=16)
    parser.add_argument("--profile", default=os.environ.get("FLOWLINE_PROFILE", "test"),
                        help="the stack whose processes' CPU is counted (its pid files)")
    parser.add_argument("--pause", type=float, default=0.0,
                        help="seconds the stack sits idle before each workflow (with --in-flight 1: the latency "
                             "of the first record after an idle period, issue 15)")
    parser.add_argument("--rate", type=float, default=0.0,
                        help="open loop: start this many workflows a second (instead of --in-flight at a time)")
    parser.add_argument("--duration", type=float, default=30.0, help="open loop: for this many seconds")
    args = parser.parse_args()
    if args.rate:
        args.workflows = int(args.rate * args.duration)
    port = os.environ.get("FLOWLINE_KAFKA_PORT", "29092")
    bootstrap = os.environ.get("FLOWLINE_KAFKA_BOOTSTRAP", f"127.0.0.1:{port}")
    api = f"http://127.0.0.1:{os.environ.get('FLOWLINE_GATEWAY_PORT', '28700')}"
    driver = Driver(bootstrap, api, args.workload)
    # CPU per workflow of each process of the stack (user + system, children included, /proc via psutil):
    # comparable across runs on a shared machine where latencies swing with the others' load
    state_dir = Path(os.environ.get("FLOWLINE_STATE_DIR") or REPO / ".flowline" / args.profile).resolve()
    pids = stack_pids(state_dir)
    before = {name: tree_cpu(pid) for name, pid in pids.items()}
    out = asyncio.run(driver.run(args.workflows, args.in_flight, args.pause, args.rate))
    cpu = {name: tree_cpu(pid) - before[name] for name, pid in pids.items()}
    report(driver, out)
    if cpu:
        print("CPU ms per workflow: " + ", ".join(f"{name} {seconds * 1000 / args.workflows:.2f}" for name, seconds
                                                   in sorted(cpu.items(), key=lambda kv: -kv[1]) if seconds > 0)
              + f"; total {sum(cpu.values()) * 1000 / args.workflows:.2f}")


if __name__ == "__main__":
    main()
