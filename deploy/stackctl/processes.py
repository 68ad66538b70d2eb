"""The Flowline processes of a stack (the registry `PROCESSES`), started detached and stopped by pid file."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploy.stackctl.profile import REPO_ROOT, Profile, rel
from deploy.stackctl.supervise import StackError, live_process, tail, terminate, write_pid_file
from schemas.settings import environment


@dataclass(frozen=True)
class ProcessSpec:
    """A Flowline process that `up()` starts detached, with `<state>/logs/<name>.log` and a pid file.

    `argv` may use `{python}` for the venv's interpreter. `env` is added to `Profile.process_env()`.
    `url` is shown in the summary; `health_url`, when set, must answer HTTP 2xx before `up()` returns.
    """

    name: str
    argv: Sequence[str]
    env: dict[str, str] = field(default_factory=dict)
    url: Callable[[Profile], str] | None = None
    health_url: Callable[[Profile], str] | None = None


# Started in this order by up(), stopped in reverse order by down(). Add an entry when the command exists,
# for example:
#   ProcessSpec("engine", ["{python}", "-m", "deploy.cli", "engine"]),
#   ProcessSpec("handler-approval", ["{python}", "-m", "deploy.cli", "handler", "approval"]),
#   ProcessSpec("gateway", ["{python}", "-m", "deploy.cli", "gateway"],
#               url=lambda p: p.gateway_url, health_url=lambda p: p.gateway_url + "healthz"),
PROCESSES: list[ProcessSpec] = [
    # the dev/test mail catcher (gateway port + 3): the handlers' email lands in <state>/mail/new/
    ProcessSpec("mailcatcher", ["{python}", "-m", "deploy.mailcatcher"],
                url=lambda p: f"smtp://127.0.0.1:{p.mailcatcher_port} -> {rel(p.state_dir / 'mail' / 'new')}"),
    ProcessSpec("engine", ["{python}", "-m", "deploy.cli", "engine"],
                url=lambda p: f"http://127.0.0.1:{p.gateway_port + 1}/health",
                health_url=lambda p: f"http://127.0.0.1:{p.gateway_port + 1}/health"),
    ProcessSpec("payment-simulator", ["{python}", "-m", "deploy.cli", "payment-simulator"]),  # development tool
    ProcessSpec("handler-approval", ["{python}", "-m", "deploy.cli", "handler", "approval"]),
    ProcessSpec("handler-notification", ["{python}", "-m", "deploy.cli", "handler", "notification"]),
    ProcessSpec("handler-action", ["{python}", "-m", "deploy.cli", "handler", "action"]),
    ProcessSpec("handler-external", ["{python}", "-m", "deploy.cli", "handler", "external"]),
    ProcessSpec("projector", ["{python}", "-m", "deploy.cli", "projector"]),
    ProcessSpec("gateway", ["{python}", "-m", "deploy.cli", "gateway"],
                url=lambda p: p.gateway_url + "docs", health_url=lambda p: p.gateway_url + "v1/openapi.json"),
    # the MCP server for agents (streamable HTTP, gateway port + 2); it calls the gateway with each client's token
    ProcessSpec("mcp", ["{python}", "-m", "deploy.cli", "mcp", "--http"],
                url=lambda p: f"http://127.0.0.1:{p.gateway_port + 2}/mcp",
                health_url=lambda p: f"http://127.0.0.1:{p.gateway_port + 2}/health"),
]


def _argv(spec: ProcessSpec) -> list[str]:
    return [a.replace("{python}", sys.executable) for a in spec.argv]


def start_process(profile: Profile, spec: ProcessSpec) -> dict[str, Any]:
    info: dict[str, Any] = {"component": spec.name, "log": str(profile.log_file(spec.name)),
                            "address": spec.url(profile) if spec.url else ""}
    t0 = time.monotonic()
    running = live_process(profile.pid_file(spec.name))
    if running is not None:
        info.update(state="running", pid=running.pid, seconds=0.0)
        return info
    profile.logs_dir.mkdir(parents=True, exist_ok=True)
    env = {**environment(), **profile.process_env(), **spec.env, "PYTHONUNBUFFERED": "1"}
    with profile.log_file(spec.name).open("ab") as log:
        popen = subprocess.Popen(_argv(spec), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 cwd=REPO_ROOT, env=env, start_new_session=True, close_fds=True)
    write_pid_file(profile.pid_file(spec.name), popen.pid, argv=_argv(spec))
    if spec.health_url is not None:
        _wait_http(spec.health_url(profile), popen, profile.log_file(spec.name))
    else:
        time.sleep(0.5)
        if popen.poll() is not None:
            raise StackError(f"{spec.name} exited with {popen.returncode}; see {profile.log_file(spec.name)}:\n"
                             f"{tail(profile.log_file(spec.name))}")
    info.update(state="started", pid=popen.pid, seconds=time.monotonic() - t0)
    return info


def _wait_http(url: str, popen: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            raise StackError(f"process exited with {popen.returncode} before {url} answered:\n{tail(log)}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as resp:
            if 200 <= resp.status < 300:
                return
        time.sleep(0.3)
    raise StackError(f"{url} did not answer within {timeout:.0f} s; see {log}")


def stop_process(profile: Profile, name: str, timeout: float = 20.0) -> str:
    proc = live_process(profile.pid_file(name))
    if proc is None:
        return "not running"
    how = terminate(proc, signal.SIGTERM, timeout)
    profile.pid_file(name).unlink(missing_ok=True)
    return how
