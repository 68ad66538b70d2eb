"""`up`, `down` and `status`: the components started in parallel where they are independent, stopped
in the reverse order, and checked for leftovers."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psutil

from deploy.stackctl.kafka import (
    ensure_topics,
    existing_partitions,
    kafka_process,
    kafka_ready,
    start_kafka,
    stop_kafka,
)
from deploy.stackctl.postgres import pg_processes, postgres_process, postgres_ready, start_postgres, stop_postgres
from deploy.stackctl.processes import PROCESSES, start_process, stop_process
from deploy.stackctl.profile import Profile, rel
from deploy.stackctl.summary import print_summary, record_timing, table, wall_seconds
from deploy.stackctl.supervise import StackError, ensure_port_free, live_process, run_coro, say
from schemas.settings import given


def wipe_state(profile: Profile) -> None:
    """Delete the profile's state dir (data, logs, pids). Refuses while something still runs."""
    if kafka_process(profile) or postgres_process(profile):
        raise StackError(f"stack {profile.name} is running; run `deploy/stack down` first")
    shutil.rmtree(profile.state_dir, ignore_errors=True)


def _keep_existing_partitions(profile: Profile) -> Profile:
    """A stack made with another default partition count keeps its count, unless FLOWLINE_PARTITIONS asks.

    Why: the count of an existing installation changes only by a planned migration
    (docs/runbooks/repartitioning.md: instance ids must keep their partition). A stack created when the dev
    default was 2 must go on with 2, its missing topics created with 2 and its processes told 2, instead of a
    warning per topic on every `up`."""
    if profile.partitions_given:
        return profile
    found = existing_partitions(profile)
    if found is None or found == profile.partitions:
        return profile
    say(f"the stack's topics have {found} partitions; keeping {found} (a new {profile.name} stack gets "
        f"{profile.partitions}; docs/runbooks/repartitioning.md changes the count)")
    return dataclasses.replace(profile, partitions=found)


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
            ensure_port_free(port, what, var)
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
            say("start-up failed; stopping what was started")
            with contextlib.suppress(Exception):
                down(profile, quiet=True)
        raise StackError("; ".join(str(e) for e in errors))
    kafka_info, pg_info = results

    t_topics = time.monotonic()
    profile = _keep_existing_partitions(profile)
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
    timings = record_timing(profile, cold, total)
    result = {
        "profile": profile.name, "kafka": kafka_info, "postgres": pg_info, "processes": proc_infos,
        "topics_seconds": topics_seconds, "total_seconds": total,
        "venv_seconds": float(given("FLOWLINE_VENV_SECONDS") or 0), "cold": cold, "timings": timings,
        "kafka_bootstrap": profile.kafka_bootstrap, "database_url": profile.database_url, "seed": seeded,
    }
    if not quiet:
        print_summary(profile, result)
    return result


def _seed(profile: Profile) -> dict[str, str]:
    """Dev principals, tokens and the built-in templates (deploy/seed.py); idempotent."""
    from deploy import seed

    return run_coro(seed.seed(profile.database_url, profile.kafka_bootstrap))


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
        print(f"stack '{profile.name}' is down; no process left (state kept in {rel(profile.state_dir)})")
    return outcome


def leftover_processes(profile: Profile) -> list[psutil.Process]:
    """Processes that still belong to this stack: java/python with our state dir, postgres on our data dir."""
    state = str(profile.state_dir)
    found = {p.pid: p for p in pg_processes(profile)}
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            cmd = " ".join(proc.info["cmdline"] or [])
            if proc.pid != os.getpid() and "kafka.Kafka" in cmd and state in cmd:
                found[proc.pid] = proc
    for pf in profile.run_dir.glob("*.pid") if profile.run_dir.exists() else []:
        proc = live_process(pf)
        if proc is not None:
            found[proc.pid] = proc
    return list(found.values())


def _service(proc: psutil.Process | None, external: bool, ready: Callable[[], Coroutine[Any, Any, bool]],
             address: str) -> dict[str, Any]:
    """Kafka's or PostgreSQL's line of `status`: an external one runs by definition; both must answer."""
    running = external or proc is not None
    return {"pid": proc.pid if proc else None, "running": running,
            "healthy": run_coro(ready()) if running else False, "address": address}


def status(profile: Profile | None = None, *, quiet: bool = False) -> dict[str, dict[str, Any]]:
    """Which components run, their pids and whether they answer."""
    profile = profile or Profile.load()
    out: dict[str, dict[str, Any]] = {}
    out["kafka"] = _service(None if profile.external_kafka else kafka_process(profile), profile.external_kafka,
                            lambda: kafka_ready(profile.kafka_bootstrap, 3.0), profile.kafka_bootstrap)
    out["postgres"] = _service(None if profile.external_postgres else postgres_process(profile),
                               profile.external_postgres, lambda: postgres_ready(profile.database_url, 3.0),
                               profile.database_url)
    for spec in PROCESSES:
        proc = live_process(profile.pid_file(spec.name))
        out[spec.name] = {"pid": proc.pid if proc else None, "running": proc is not None,
                          "healthy": proc is not None, "address": spec.url(profile) if spec.url else ""}
    if not quiet:
        rows = [["COMPONENT", "STATE", "PID", "ADDRESS"]]
        for name, s in out.items():
            state = "healthy" if s["healthy"] else ("running (not answering)" if s["running"] else "stopped")
            rows.append([name, state, str(s["pid"] or "-"), s["address"] or "-"])
        print(f"Flowline stack '{profile.name}'   (state: {rel(profile.state_dir)})")
        print(table(rows))
    return out


def is_up(profile: Profile) -> bool:
    s = status(profile, quiet=True)
    return bool(s["kafka"]["healthy"] and s["postgres"]["healthy"])
