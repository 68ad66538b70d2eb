"""What every gateway handler works with: the `Gateway` (its connections) and the parsed request (`Call`).

Why a module of its own: the handlers (templates, instances, agents, operations) imported these from
`gateway/app.py`, the composition root that in turn imports every handler module, a cycle. Now the root
imports the handlers and the handlers import this module; nothing here imports a handler or the root.
"""

from __future__ import annotations

import asyncio
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
    # None while the broker has not been reachable since the start (gateway/app.py connects it later)
    producer: AIOKafkaProducer | None
    codec: Codec = field(default_factory=Codec.from_env)
    # the projector's commits, so requests waiting for the read model re-read at once (schemas/notify.py)
    projected: ReadModelSignal = field(default_factory=ReadModelSignal)
    connecting: asyncio.Task | None = None
    closing: asyncio.Event = field(default_factory=asyncio.Event)

    def kafka(self) -> AIOKafkaProducer:
        """The producer, or a 503 while the broker has not been reachable since the gateway started."""
        if self.producer is None:
            raise Problem(503, f"the Kafka broker ({self.settings.bootstrap_servers}) has not been reachable since "
                               "the gateway started; nothing was sent, retry later")
        return self.producer

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
    # typed parameters by (location, name), from `gateway.params.Parameters.read`
    values: dict[tuple[str, str], Any] = field(default_factory=dict)

    @property
    def me(self) -> Principal:
        assert self.principal is not None
        return self.principal

    def param(self, name: str) -> str:
        """A path parameter, validated against the OpenAPI document (gateway/params.py)."""
        return self.values[("path", name)]

    def step(self) -> int:
        """The step number `n` of the path: an integer from 1 to 100 (the document says so)."""
        return self.values[("path", "n")]

    def query(self, name: str) -> Any:
        """A query parameter, typed and validated from the OpenAPI document: the schema's default (or None)
        when absent. A name the operation does not declare is a KeyError: declare it in the document."""
        return self.values[("query", name)]

    @property
    def wait(self) -> bool:
        return bool(self.query("wait"))


HandlerFn = Callable[[Call], Awaitable[web.StreamResponse]]


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, text=json.dumps(data, default=str), content_type="application/json")


