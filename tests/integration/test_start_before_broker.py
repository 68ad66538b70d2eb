"""A process started before its broker waits for it instead of dying (schemas.process.wait_for_kafka).

Containers start in any order, and a broker restarting after a crash takes a while: the engine, the
projector and the handlers used to exit at their first client's `start()` with a traceback. Here each is
pointed at a port where nothing listens yet; once it has said it is waiting, a TCP relay to the real test
broker opens on that port (the broker's metadata then sends the clients to the broker itself), and the
process must get to work.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.integration.engine_harness import REPO, EngineWorld
from tests.integration.gateway.world import insert_tenant
from tests.integration.handlers.support import free_port

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def relay(listen_port: int, target: str) -> asyncio.Server:
    host, port = target.rsplit(":", 1)

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    return await asyncio.start_server(serve, "127.0.0.1", listen_port)


def spawn(args: list[str], env: dict[str, str], log: Path, world: EngineWorld) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, *args], cwd=REPO, env=env, stdout=log.open("wb"),
                            stderr=subprocess.STDOUT)
    world._procs.append(proc)  # killed by the world on exit, whatever happens
    return proc


async def wait_for_text(log: Path, text: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if text in log.read_text(errors="replace"):
            return
        assert proc.poll() is None, f"the process exited ({proc.returncode}):\n{log.read_text()[-3000:]}"
        await asyncio.sleep(0.2)
    raise AssertionError(f"{text!r} not logged within {timeout} s:\n{log.read_text()[-3000:]}")


async def engine_ready(port: int) -> bool:
    with contextlib.suppress(aiohttp.ClientError, OSError):
        async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/health") as resp:
            return resp.status == 200
    return False


async def test_engine_and_projector_wait_for_a_broker_that_is_not_up_yet(stack, kafka_bootstrap, database_url,
                                                                         tmp_path):
    async with EngineWorld(kafka_bootstrap, partitions=2) as world:
        port, health = free_port(), free_port()
        env = {**world.env(), "FLOWLINE_KAFKA_BOOTSTRAP": f"127.0.0.1:{port}", "FLOWLINE_ENGINE_HTTP_PORT": str(health),
               "DATABASE_URL": database_url, "FLOWLINE_PROJECTOR_GROUP": f"{world.prefix}projector"}
        engine_log, projector_log = tmp_path / "engine.log", tmp_path / "projector.log"
        engine = spawn(["-m", "streams"], env, engine_log, world)
        projector = spawn(["-m", "deploy.cli", "projector"], env, projector_log, world)
        handler_log = tmp_path / "handler.log"
        handler = spawn(["-m", "handlers", "notification"], env, handler_log, world)  # its group: the prefix's
        for log, proc in ((engine_log, engine), (projector_log, projector), (handler_log, handler)):
            await wait_for_text(log, "waiting for the Kafka broker", proc)
        await asyncio.sleep(2)  # a couple of retries more: still alive, still waiting
        assert engine.poll() is None and projector.poll() is None and handler.poll() is None
        assert not await engine_ready(health)

        server = await relay(port, kafka_bootstrap)
        try:
            await wait_for_text(engine_log, "engine running", engine)
            await wait_for_text(projector_log, "projector consuming", projector)
            await wait_for_text(handler_log, "handler notification consuming", handler)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 60
            while not await engine_ready(health):
                assert loop.time() < deadline, engine_log.read_text()[-3000:]
                assert engine.poll() is None, engine_log.read_text()[-3000:]
                await asyncio.sleep(0.3)
        finally:
            server.close()


async def test_the_gateway_serves_before_the_broker_is_up_and_sends_once_it_is(stack, kafka_bootstrap,
                                                                              database_url, tmp_path):
    """The gateway used to exit at its producer's start when the broker was not up. Now it serves: /health
    says the broker is down, a template change answers 503 with nothing saved, and once the broker is
    reachable the same request is accepted."""
    async with EngineWorld(kafka_bootstrap, partitions=2) as world:
        port, http = free_port(), free_port()
        env = {**world.env(), "FLOWLINE_KAFKA_BOOTSTRAP": f"127.0.0.1:{port}", "FLOWLINE_GATEWAY_PORT": str(http),
               "DATABASE_URL": database_url}
        log = tmp_path / "gateway.log"
        gateway = spawn(["-m", "deploy.cli", "gateway"], env, log, world)
        await wait_for_text(log, "gateway listening", gateway)
        assert "not reachable at start" in log.read_text()
        base = f"http://127.0.0.1:{http}"
        admin = (await insert_tenant(database_url)).auth("admin")
        template = {"name": f"late broker {world.prefix}", "trigger_type": "manual",
                    "steps": [{"type": "wait", "name": "Pause", "config": {"duration_seconds": 1}}]}
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{base}/health") as resp:
                health = await resp.json()
                assert resp.status == 503 and health["checks"]["broker"]["ok"] is False
            async with session.post(f"{base}/v1/workflows/templates", json=template, headers=admin) as resp:
                problem = await resp.json()
                assert resp.status == 503, problem
                assert "has not been reachable" in problem["detail"]
            async with session.get(f"{base}/v1/workflows/templates", headers=admin) as resp:
                listed = await resp.json()
                assert resp.status == 200  # reads answer meanwhile
                assert template["name"] not in [t["name"] for t in listed["items"]]  # nothing was saved

            server = await relay(port, kafka_bootstrap)
            try:
                await wait_for_text(log, "commands are accepted", gateway)
                async with session.post(f"{base}/v1/workflows/templates", json=template, headers=admin) as resp:
                    assert resp.status == 201, await resp.text()
                    created = await resp.json()
                async with session.delete(f"{base}/v1/workflows/templates/{created['id']}", headers=admin) as resp:
                    assert resp.status == 200, await resp.text()
            finally:
                server.close()
