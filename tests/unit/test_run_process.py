"""`run_process` (schemas/process.py): SIGTERM and SIGINT call the process's stop, and the process exits 0.

Why: every process (engine, handlers, gateway, projector, payment simulator) starts through it, so a stack
`down` that sends SIGTERM must end each of them cleanly, including one stopped before it could listen.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent("""
    import asyncio, sys
    from schemas.process import run_process

    stopped = asyncio.Event()
    cancel = sys.argv[1] == "cancel"
    tasks = []

    async def run():
        tasks.append(asyncio.current_task())
        print("ready", flush=True)
        if cancel:
            await asyncio.sleep(3600)  # still "wiring up": only a cancellation ends this
        await stopped.wait()
        print("ran to the end", flush=True)

    def stop():
        print("stop called", flush=True)
        if cancel:
            tasks[0].cancel()
        stopped.set()

    sys.exit(run_process(run, stop))
""")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("mode", ["event", "cancel"])
def test_a_signal_calls_stop_and_the_process_exits_0(sig: signal.Signals, mode: str) -> None:
    child = subprocess.Popen([sys.executable, "-c", CHILD, mode], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    child.send_signal(sig)
    out, _ = child.communicate(timeout=60)
    assert child.returncode == 0
    assert "stop called" in out
    assert ("ran to the end" in out) == (mode == "event")
