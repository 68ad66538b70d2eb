"""Real local servers and Kafka helpers for the handler tests: an aiohttp receiver (ERP, CRM, webhook
endpoint), an aiosmtpd mail server, handler settings on an EngineWorld's prefixed topics, and a reader of
the step results the handlers publish."""

from __future__ import annotations

import asyncio
import contextlib
import email
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiokafka import AIOKafkaConsumer
from aiosmtpd.controller import Controller

from core.commands import ReportStepResult
from handlers.main import HandlerProcess
from handlers.runtime import HandlerRuntime
from handlers.settings import HandlerSettings
from tests.integration.engine_harness import EngineWorld

LOOPBACK = ("127.0.0.0/8:*",)  # the tests' local servers listen on random ports


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


Route = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Receiver:
    """An HTTP server on 127.0.0.1 that records every request and answers through per-path routes."""

    routes: dict[str, Route] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.seen.append(Seen(request.method, request.path, dict(request.query), dict(request.headers), body))
        route = self.routes.get(request.path)
        if route is None:
            return web.json_response({"error": "no route"}, status=404)
        return await route(request)

    async def __aenter__(self) -> Receiver:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        self.port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._runner.cleanup()

    def on(self, path: str, status: int = 200, json_body: Any = None, *, delay: float = 0,
           headers: dict[str, str] | None = None, text: str | None = None) -> None:
        async def answer(request: web.Request) -> web.StreamResponse:
            if delay:
                await asyncio.sleep(delay)
            if text is not None:
                return web.Response(status=status, text=text, headers=headers)
            return web.json_response(json_body if json_body is not None else {}, status=status, headers=headers)

        self.routes[path] = answer

    def sequence(self, path: str, *answers: tuple[int, Any]) -> None:
        """Answer the n-th call with the n-th (status, json) pair, then repeat the last."""
        calls = {"n": 0}

        async def answer(request: web.Request) -> web.StreamResponse:
            status, body = answers[min(calls["n"], len(answers) - 1)]
            calls["n"] += 1
            return web.json_response(body, status=status)

        self.routes[path] = answer

    def calls(self, path: str) -> list[Seen]:
        return [s for s in self.seen if s.path == path]


class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[email.message.Message] = []

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content)
        message["X-Envelope-To"] = ", ".join(envelope.rcpt_tos)
        self.messages.append(message)
        return "250 OK"


@contextlib.contextmanager
def smtp_server():
    mailbox = _Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield controller.port, mailbox
    finally:
        controller.stop()


def handler_settings(world: EngineWorld, database_url: str = "", **overrides: Any) -> HandlerSettings:
    base = dict(bootstrap_servers=world.bootstrap, topic_prefix=world.prefix, database_url=database_url,
                allow_private_networks=LOOPBACK, session_timeout_ms=6000, commit_interval_ms=100,
                public_url="http://127.0.0.1:28700")
    base.update(overrides)
    return HandlerSettings(**base)


class Handlers:
    """Real handler processes (composition roots) running in this event loop."""

    def __init__(self) -> None:
        self.processes: list[HandlerProcess] = []
        self.tasks: list[asyncio.Task] = []

    async def start(self, kind: str, settings: HandlerSettings, timeout: float = 30) -> HandlerProcess:
        process = HandlerProcess(kind, settings)
        self.processes.append(process)
        task = asyncio.create_task(process.run())
        self.tasks.append(task)

        def runtime():
            if task.done():
                task.result()  # surfaces a wiring error instead of a timeout
            return process.runtime

        await wait_ready(runtime, timeout)
        return process

    async def stop(self) -> None:
        for process in self.processes:
            process.stop()
        for task in self.tasks:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(task, 20)


async def wait_ready(get_runtime: Callable[[], HandlerRuntime | None], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runtime = get_runtime()
        if runtime is not None and runtime.ready.is_set():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("handler did not get its partitions in time")


class Results:
    """Every ReportStepResult on the world's step-results topic."""

    def __init__(self, world: EngineWorld) -> None:
        self.world = world
        self.items: list[ReportStepResult] = []
        self.keys: list[bytes] = []

    async def __aenter__(self) -> Results:
        self.consumer = AIOKafkaConsumer(self.world.topic("workflow.step-results"),
                                         bootstrap_servers=self.world.bootstrap, auto_offset_reset="earliest",
                                         enable_auto_commit=False)
        await self.consumer.start()
        self.task = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        while True:
            batches = await self.consumer.getmany(timeout_ms=100)
            for records in batches.values():
                for record in records:
                    self.items.append(self.world.codec.decode(record.value))
                    self.keys.append(record.key)

    async def __aexit__(self, *exc: object) -> None:
        self.task.cancel()
        with contextlib.suppress(BaseException):
            await self.task
        await self.consumer.stop()

    async def wait_for(self, request_id: str, timeout: float = 30) -> ReportStepResult:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for result in self.items:
                if result.command_id == f"result:{request_id}":
                    return result
            await asyncio.sleep(0.05)
        raise AssertionError(f"no result for {request_id} within {timeout}s; got {[r.command_id for r in self.items]}")
