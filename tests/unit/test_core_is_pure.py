"""The core imports only the standard library (and simpleeval) and never reads the clock or randomness."""

from __future__ import annotations

import datetime
import pkgutil
import random
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

import core
from core import commands as cmd
from tests.unit.harness import HOUR, Harness, agent, human

CORE = Path(core.__file__).parent
IO_LIBRARIES = ("faust", "aiokafka", "aiohttp", "asyncpg", "fastavro")


def core_modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages([str(CORE)], prefix="core."))


def test_importing_every_core_module_loads_no_io_library():
    script = (
        "import importlib, sys\n"
        f"for name in {core_modules()!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {IO_LIBRARIES!r}))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                            cwd=CORE.parent)
    assert result.stdout.strip() == "[]"


FORBIDDEN = re.compile(r"\b(datetime\.now|datetime\.utcnow|date\.today|time\.time|time\.monotonic|"
                       r"perf_counter|uuid[14]|random\.|os\.environ|getenv|import random|import uuid|"
                       r"import time\b|import os\b|import socket|open\()")


def test_core_source_reads_no_clock_randomness_or_environment():
    offenders = []
    for path in sorted(CORE.rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if FORBIDDEN.search(line.split("#")[0]):
                offenders.append(f"{path.relative_to(CORE.parent)}:{number}: {line.strip()}")
    assert offenders == []


@pytest.fixture
def no_clock_or_randomness(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("the core must not read the clock or randomness")

    class FrozenDatetime(datetime.datetime):
        now = classmethod(forbidden)
        utcnow = classmethod(forbidden)

    for target, name in ((time, "time"), (time, "time_ns"), (time, "monotonic"), (random, "random"),
                         (random, "randint"), (random, "choice"), (uuid, "uuid4"), (uuid, "uuid1")):
        monkeypatch.setattr(target, name, forbidden)
    monkeypatch.setattr(datetime, "datetime", FrozenDatetime)


def test_a_whole_workflow_runs_without_touching_the_clock_or_randomness(no_clock_or_randomness):
    h = Harness("procurement_approval")
    h.start({"id": "tr_1", "amount": 5000})
    h.approve(2, human("u_cfo", "cfo"))
    h.approve(3, agent("agent_456", max_amount=10_000))
    h.fail(4, "timeout")
    h.fire_due_timers(HOUR)
    h.succeed(4, {"ok": True})
    h.send(cmd.Advance(command_id="late", instance_id=h.instance_id))
    assert h.state.status.value == "COMPLETED"


def test_the_same_inputs_give_the_same_decisions():
    def run() -> list:
        h = Harness("model_deployment")
        h.start({"validation_url": "https://v.test", "model": "m", "version": "1", "deploy_at": "2026-01-03T00:00:00Z"})
        h.fail(1, "503")
        h.fire_due_timers(HOUR)
        h.succeed(1, {"status": 200, "body": {"passed": True, "metrics": {"auc": 0.8}}})
        return h.events + h.requests

    assert run() == run()
