"""The engine's HTTP face for operators: `/health` (readiness, what this worker owns) and `/metrics`.

Ready means: the template catalog is loaded and every role owns its partitions with their state restored
(a worker that owns no partition, because there are more workers than partitions, is ready and idle).
"""

from __future__ import annotations

import time

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest


def health_report(engine) -> dict:
    workers = {w.role: sorted(w.producers) for w in engine.workers}
    processor = engine.processor
    return {
        "status": "ready" if engine.ready else "starting",
        "roles": list(engine.roles),
        "partitions": workers,
        # which worker reads which trigger topic (docs/adr/0014)
        "trigger_topics": {"inline": engine.trigger_topics[0], "matcher": engine.trigger_topics[1]},
        # states live on disk (streams/state_store.py): what this says costs nothing to count
        "instances_cached": sum(store.cached for store in processor.stores.values()),
        "standby_partitions": sorted(processor.standby.partitions) if processor.standby else [],
        "restore_reads": processor.restore_reads,
        "restore_seconds": processor.restore_seconds,
        "restore_seconds_total": processor.restore_seconds_total,
        "templates": len(engine.catalog.versions),
        "uptime_seconds": round(time.monotonic() - engine.started, 1),
    }


async def start_health_server(engine, port: int, host: str = "127.0.0.1") -> web.AppRunner:
    async def health(_: web.Request) -> web.Response:
        report = health_report(engine)
        return web.json_response(report, status=200 if report["status"] == "ready" else 503)

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
