"""What every gateway handler works with: the `Gateway` (its connections) and the parsed request (`Call`).

Why a module of its own: the handlers (templates, instances, agents, operations) imported these from
`gateway/app.py`, the composition root that in turn imports every handler module, a cycle. Now the root
imports the handlers and the handlers import this module; nothing here imports a handler or the root.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from aiohttp import web
from aiokafka import AIOKafkaProducer

from gateway.auth import Authenticator, Principal
from gateway.commands import CommandSender
from gateway.problems import Problem
from gateway.settings import GatewaySettings
from schemas.codec import Codec
from schemas.notify import ReadModelSignal


@dataclass
class Gateway:
    settings: GatewaySettings
    pool: asyncpg.Pool
    producer: AIOKafkaProducer
    codec: Codec = field(default_factory=Codec.from_env)
    # the projector's commits, so requests waiting for the read model re-read at once (schemas/notify.py)
    projected: ReadModelSignal = field(default_factory=ReadModelSignal)

    def __post_init__(self) -> None:
        self.auth = Authenticator(self.pool)
        self.commands = CommandSender(self)


@dataclass
class Call:
    """One request, parsed: what a handler gets."""

    request: web.Request
    gateway: Gateway
    principal: Principal | None
    body: Any
    raw_body: bytes
    operation: dict[str, Any]
    idempotency_key: str | None = None

    @property
    def me(self) -> Principal:
        assert self.principal is not None
        return self.principal

    def param(self, name: str) -> str:
        return no_nul(self.request.match_info[name], f"/path/{name}")

    def step(self) -> int:
        raw = self.request.match_info["n"]
        if not raw.isdigit() or not 1 <= int(raw) <= 100:
            raise Problem(400, f"step number must be an integer from 1 to 100, got {raw!r}", pointer="/path/n")
        return int(raw)

    def query(self, name: str) -> str | None:
        value = self.request.query.get(name)
        return None if value is None else no_nul(value, f"/query/{name}")

    @property
    def wait(self) -> bool:
        value = (self.request.query.get("wait") or "").lower()
        if value not in ("", "true", "false", "1", "0"):
            raise Problem(400, "wait must be true or false", pointer="/query/wait")
        return value in ("true", "1")


def no_nul(value: str, pointer: str) -> str:
    """PostgreSQL text cannot hold NUL: refuse it here rather than fail in the query (a 500)."""
    if "\x00" in value:
        raise Problem(400, f"{pointer.rsplit('/', 1)[-1]} must not contain a NUL character", pointer=pointer)
    return value


HandlerFn = Callable[[Call], Awaitable[web.StreamResponse]]


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, text=json.dumps(data, default=str), content_type="application/json")


