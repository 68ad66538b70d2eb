"""A payment load for the fault suites (issue 9, "Faults with a load running").

`PaymentLoad` runs, on an `EngineWorld`'s own topics: the engine as a separate process (so a fault can
SIGKILL it or pull the broker from under it), the real action handler as a separate process, and the
payment simulator (deploy/payment_simulator.py) in-process with its ledger in a file. Each workflow pays
one known transfer through the simulator and then completes. A test injects its fault while `run()` is
sending, waits with `wait_finished()`, and ends with `violations()`: the invariant checker
(tests/integration/invariants.py) fed the events read as a downstream consumer reads them and the
simulator's real ledger.

`FLOWLINE_CHAOS_LONG=1` makes the suites long (more workflows, more faults); CI runs the short defaults
(docs/testing.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

from core import events as ev
from core.commands import StartInstance
from deploy.payment_simulator import PaymentSimulator, read_ledger
from schemas import topics
from tests.integration import invariants
from tests.integration.engine_harness import REPO, EngineWorld

LONG = os.environ.get("FLOWLINE_CHAOS_LONG") == "1"


def scaled(short: int, long: int) -> int:
    """`short` in CI, `long` with FLOWLINE_CHAOS_LONG=1."""
    return long if LONG else short


PAY_AND_FINISH = {
    "name": "Pay and finish",
    "trigger_type": "manual",
    "steps": [
        {"type": "action", "name": "Execute Payment", "config": {
            "action": "execute_transfer",
            "params": {"transfer_id": "{{trigger.id}}", "amount": "{{trigger.amount}}"},
            "timeout_seconds": 60, "retry_config": {"max_retries": 5, "backoff_ms": 500}}},
        {"type": "condition", "name": "Finish", "config": {"expression": "true", "if_true": "complete"}},
    ],
}


def spawn_action_handler(world: EngineWorld, database_url: str, log_name: str) -> subprocess.Popen:
    env = {**world.env(), "DATABASE_URL": database_url, "FLOWLINE_ALLOW_PRIVATE_NETWORKS": "127.0.0.0/8:*",
           "FLOWLINE_HANDLER_SESSION_TIMEOUT_MS": "6000"}
    (REPO / ".flowline").mkdir(exist_ok=True)
    log = open(REPO / ".flowline" / f"{log_name}.log", "wb")  # noqa: SIM115 - kept open for the child
    proc = subprocess.Popen([sys.executable, "-m", "handlers", "action"], cwd=REPO, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    world._procs.append(proc)  # killed by the world on exit, whatever happens
    return proc


def sigkill(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def stop(proc: subprocess.Popen | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(20)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


class PaymentLoad:
    def __init__(self, world: EngineWorld, database_url: str, ledger: Path, *, delay_ms: int = 0) -> None:
        self.world, self.database_url = world, database_url
        self.template_id = f"tpl_pay_{uuid.uuid4().hex[:8]}"
        self.simulator = PaymentSimulator(bootstrap_servers=world.bootstrap, topic_prefix=world.prefix,
                                          ledger=ledger, delay_ms=delay_ms)
        self.ids: list[str] = []
        self.engine: subprocess.Popen | None = None
        self.handler: subprocess.Popen | None = None
        self._sim_task: asyncio.Task | None = None
        self._generation = 0

    async def __aenter__(self) -> PaymentLoad:
        await self.world.publish_template(self.template_id, PAY_AND_FINISH)
        self._sim_task = asyncio.create_task(self.simulator.run())
        self.engine = self.restart_engine()
        self.handler = self.restart_handler()
        await asyncio.sleep(4)  # the engine joins its group and takes the partitions
        return self

    async def __aexit__(self, *exc: object) -> None:
        stop(self.handler)
        stop(self.engine)
        self.simulator.stop()
        if self._sim_task is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(self._sim_task, 20)

    def restart_engine(self) -> subprocess.Popen:
        self._generation += 1
        self.engine = self.world.spawn_engine(f"chaos-engine-{self.world.prefix}{self._generation}")
        return self.engine

    def restart_handler(self) -> subprocess.Popen:
        self._generation += 1
        self.handler = spawn_action_handler(self.world, self.database_url,
                                            f"chaos-action-{self.world.prefix}{self._generation}")
        return self.handler

    async def start_one(self) -> str:
        n = len(self.ids)
        instance_id = f"wfi_pay_{self.world.prefix.rstrip('.')}_{n:05d}"
        transfer_id = f"tr_{self.world.prefix.rstrip('.')}_{n:05d}"
        self.ids.append(instance_id)
        # the payment system's record of the transfer first (the simulator pays only known transfers)
        await self.world.send_raw(topics.PAYMENTS_TRANSFERS, json.dumps({
            "event_id": f"evt_{transfer_id}", "transfer_id": transfer_id, "tenant_id": "t1",
            "amount_minor": 100 + n, "currency": "USD"}).encode(), key=f"evt_{transfer_id}".encode())
        await self.world.send_command(StartInstance(
            command_id=f"start:{instance_id}", instance_id=instance_id, template_id=self.template_id,
            template_version=1, tenant_id="t1", trigger={"id": transfer_id, "amount": (100 + n) / 100}))
        return instance_id

    async def run(self, count: int, *, pace: float = 0.02, faults: dict | None = None) -> None:
        """Start `count` workflows; `faults[i]` (an async callable) runs after the i-th one was sent."""
        for i in range(count):
            await self.start_one()
            if faults and i in faults:
                await faults[i]()
            await asyncio.sleep(pace)

    def finished(self, instance_id: str) -> bool:
        return any(isinstance(e, invariants.TERMINAL) for e in self.world.events.get(instance_id, ()))

    async def wait_finished(self, timeout: float = 180) -> None:
        await self.world.wait_until(lambda: all(self.finished(i) for i in self.ids), timeout=timeout,
                                    message=f"all {len(self.ids)} workflows finished "
                                            f"({sum(map(self.finished, self.ids))} did)")

    def completed(self) -> list[str]:
        return [i for i in self.ids
                if any(isinstance(e, ev.InstanceCompleted) for e in self.world.events.get(i, ()))]

    def ledger(self) -> list[dict]:
        return read_ledger(self.simulator.ledger)

    async def violations(self) -> list[str]:
        """The invariant checker over what a downstream consumer reads, and the simulator's real ledger;
        plus: a completed workflow's payment is in the ledger, and no payment is for a workflow that did
        not complete."""
        events = await invariants.read_events(self.world.bootstrap, self.world.prefix, settle=2.0)
        ledger = self.ledger()
        problems = invariants.check(events, finished=self.ids, ledger=ledger)
        paid = {entry["idempotency_key"].split(":")[0] for entry in ledger}
        for instance_id in self.ids:
            done = any(isinstance(e, ev.InstanceCompleted) for e in events.get(instance_id, ()))
            if done and instance_id not in paid:
                problems.append(f"{instance_id}: completed without a payment in the ledger")
            if instance_id in paid and not done:
                problems.append(f"{instance_id}: paid but not reported completed")
        return problems
