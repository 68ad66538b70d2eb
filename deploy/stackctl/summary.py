"""What `up` prints: the component table, the timings (true wall time), URLs, tokens and the environment."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from deploy.stackctl.profile import Profile, rel
from schemas import topics as topics_mod
from schemas.settings import given


def _timings_file(profile: Profile) -> Path:
    return profile.state_dir / "timings.json"


def record_timing(profile: Profile, cold: bool, seconds: float) -> dict[str, float]:
    path = _timings_file(profile)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = {}
    data["last_cold" if cold else "last_warm"] = round(seconds, 2)
    path.write_text(json.dumps(data))
    return data


def table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def print_summary(profile: Profile, result: dict[str, Any]) -> None:
    k, pg = result["kafka"], result["postgres"]
    rows = [["COMPONENT", "STATE", "PID", "ADDRESS", "LOG"]]
    rows.append(["kafka", k["state"], str(k.get("pid") or "-"),
                 f"{profile.kafka_bootstrap}" + ("" if profile.external_kafka
                                                 else f" (controller :{profile.controller_port})"),
                 rel(k["log"]) if not profile.external_kafka else "-"])
    rows.append(["postgres", pg["state"], str(pg.get("pid") or "-"), profile.database_url,
                 rel(pg["log"]) if not profile.external_postgres else "-"])
    for p in result["processes"]:
        rows.append([p["component"], p["state"], str(p.get("pid") or "-"), p.get("address") or "-",
                     rel(p["log"])])
    if not any(p["component"] == "gateway" for p in result["processes"]):
        rows.append(["gateway", "not started", "-", f"{profile.gateway_url}", "-"])
    print()
    print(f"Flowline stack '{profile.name}' is up   (state: {rel(profile.state_dir)})")
    print(table(rows))
    created = k.get("topics_created") or []
    print(f"topics: {len(topics_mod.TOPICS)} ready, {len(created)} created now, "
          f"{profile.partitions} partition{'' if profile.partitions == 1 else 's'} (FLOWLINE_PARTITIONS)")
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
    raw = given("FLOWLINE_STACK_STARTED_AT", env) or ""
    try:
        started = float(raw)
    except ValueError:
        started = up_started
    # A value from another run (an exported shell variable left behind) is not this start's.
    if not up_started - 3600 < started <= up_started:
        started = up_started
    return now - started


