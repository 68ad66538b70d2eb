"""The HTTP gateway (aiohttp): parse, build a command, send it, map errors to RFC 7807.

Routes come from the OpenAPI document (`gateway.openapi`): every operation is registered by its
`operationId` with the handler of that name in `HANDLERS`, wrapped by `_endpoint`, which authenticates
(bearer token -> principal), enforces the body limit, parses and validates the JSON body, and honours
`Idempotency-Key`. Reads come from the PostgreSQL read model, never from engine state; state changes are
commands on `workflow.commands` (`gateway.commands`).

Run it with `flowline gateway` (environment in `gateway.settings`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from aiohttp import web
from aiokafka import AIOKafkaProducer
from jsonschema import Draft202012Validator
from prometheus_client import Counter, Histogram

from gateway import openapi
from gateway.auth import Authenticator, Principal
from gateway.commands import CommandSender
from gateway.problems import CONTENT_TYPE as PROBLEM_CONTENT_TYPE
from gateway.problems import Problem, problems_middleware
from gateway.settings import GatewaySettings
from schemas.codec import Codec

log = logging.getLogger("flowline.gateway")

REQUESTS = Counter("flowline_gateway_requests_total", "HTTP requests", ["operation", "status"])
LATENCY = Histogram("flowline_gateway_request_seconds", "HTTP request latency", ["operation"])

GATEWAY_KEY = web.AppKey("gateway", object)
# checked by core.validation, not by the JSON schema
TEMPLATE_BODIES = {"createTemplate", "updateTemplate", "validateTemplate", "validateDocument"}


@dataclass
class Gateway:
    settings: GatewaySettings
    pool: asyncpg.Pool
    producer: AIOKafkaProducer
    codec: Codec = field(default_factory=Codec)

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
        return self.request.match_info[name]

    def step(self) -> int:
        raw = self.request.match_info["n"]
        if not raw.isdigit() or not 1 <= int(raw) <= 100:
            raise Problem(400, f"step number must be an integer from 1 to 100, got {raw!r}", pointer="/path/n")
        return int(raw)

    def query(self, name: str) -> str | None:
        return self.request.query.get(name)

    @property
    def wait(self) -> bool:
        value = (self.request.query.get("wait") or "").lower()
        if value not in ("", "true", "false", "1", "0"):
            raise Problem(400, "wait must be true or false", pointer="/query/wait")
        return value in ("true", "1")


HandlerFn = Callable[[Call], Awaitable[web.StreamResponse]]


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, text=json.dumps(data, default=str), content_type="application/json")


def _pointer(path) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


def _validator(operation: dict[str, Any]) -> Draft202012Validator | None:
    if operation["operationId"] in TEMPLATE_BODIES:
        return None
    schema = openapi.body_schema(operation)
    return Draft202012Validator(schema) if schema else None


def _check_body(validator: Draft202012Validator | None, body: Any) -> None:
    if validator is None:
        return
    errors = sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))
    if errors:
        items = [{"pointer": _pointer(e.absolute_path), "message": _message(e)} for e in errors]
        raise Problem(422, f"the request body is invalid: {items[0]['pointer'] or '/'}: {items[0]['message']}",
                      errors=items, pointer=items[0]["pointer"])


def _message(error) -> str:
    if error.validator == "additionalProperties":
        return f"unknown field(s): {error.message.split('(')[-1].rstrip(')')}" if "(" in error.message \
            else error.message
    return error.message


async def _read_body(request: web.Request, settings: GatewaySettings) -> bytes:
    if request.content_length is not None and request.content_length > settings.max_body_bytes:
        raise Problem(413, f"the request body is {request.content_length} bytes; the limit is "
                           f"{settings.max_body_bytes}")
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise Problem(413, f"the request body is larger than {settings.max_body_bytes} bytes") from None


def _parse_json(raw: bytes, content_type: str) -> Any:
    if not raw.strip():
        return None
    if content_type not in ("application/json", "") and not content_type.endswith("+json"):
        raise Problem(415, f"send the body as application/json, not {content_type}")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Problem(400, f"the body is not valid JSON: {exc}", pointer="") from None


def _endpoint(gateway: Gateway, operation: dict[str, Any], handler: HandlerFn) -> Callable:
    public = operation.get("security") == []
    validator = _validator(operation)
    name = operation["operationId"]
    has_body = "requestBody" in operation
    body_required = has_body and operation["requestBody"].get("required", False)

    async def endpoint(request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        status = 500
        try:
            response = await _serve(request)
            status = response.status
            return response
        except Problem as problem:
            status = problem.status
            raise
        finally:
            REQUESTS.labels(name, str(status)).inc()
            LATENCY.labels(name).observe(time.perf_counter() - started)

    async def _serve(request: web.Request) -> web.StreamResponse:
        principal = None if public else await gateway.auth.principal(request.headers.get("Authorization"))
        raw = await _read_body(request, gateway.settings) if has_body else b""
        body = _parse_json(raw, request.content_type if raw.strip() else "") if has_body else None
        if has_body:
            if body is None:
                if body_required:
                    raise Problem(400, "a JSON request body is required", pointer="")
                body = {}
            _check_body(validator, body)
        key = request.headers.get("Idempotency-Key") if request.method == "POST" else None
        if key is not None and not 1 <= len(key) <= 200:
            raise Problem(400, "Idempotency-Key must be 1 to 200 characters", pointer="/header/Idempotency-Key")
        call = Call(request=request, gateway=gateway, principal=principal, body=body, raw_body=raw,
                    operation=operation, idempotency_key=key)
        if key is None or principal is None:
            return await handler(call)
        return await _idempotent(gateway, call, handler)

    endpoint.__name__ = name
    return endpoint


async def _idempotent(gateway: Gateway, call: Call, handler: HandlerFn) -> web.StreamResponse:
    """First request with a key: run it and keep the response. Replay: the kept response. Other body: 422."""
    request = call.request
    digest = hashlib.sha256(b"\n".join([request.method.encode(), request.path_qs.encode(), call.raw_body]))
    request_hash = digest.hexdigest()
    principal_id = call.me.id
    key = call.idempotency_key
    pool = gateway.pool
    inserted = await pool.fetchval(
        """INSERT INTO idempotency_keys (principal_id, key, request_hash) VALUES ($1, $2, $3)
           ON CONFLICT (principal_id, key) DO NOTHING RETURNING 1""", principal_id, key, request_hash)
    if not inserted:
        row = await pool.fetchrow("SELECT request_hash, status, content_type, body FROM idempotency_keys "
                                  "WHERE principal_id = $1 AND key = $2", principal_id, key)
        if row is None:
            raise Problem(409, "a request with this Idempotency-Key is being retried; try again")
        if row["request_hash"] != request_hash:
            raise Problem(422, "this Idempotency-Key was already used with a different request",
                          pointer="/header/Idempotency-Key")
        if row["status"] is None:
            raise Problem(409, "the first request with this Idempotency-Key is still in progress")
        return web.Response(status=row["status"], body=row["body"], content_type=row["content_type"],
                            headers={"Idempotent-Replayed": "true"})
    try:
        response = await handler(call)
    except Problem as problem:
        if problem.status >= 500:
            await pool.execute("DELETE FROM idempotency_keys WHERE principal_id = $1 AND key = $2",
                               principal_id, key)
            raise
        body = json.dumps(problem.body(request.path)).encode()
        await _store(pool, principal_id, key, problem.status, PROBLEM_CONTENT_TYPE, body)
        raise
    except BaseException:
        await pool.execute("DELETE FROM idempotency_keys WHERE principal_id = $1 AND key = $2", principal_id, key)
        raise
    if isinstance(response, web.Response) and response.status < 500:
        await _store(pool, principal_id, key, response.status, response.content_type, response.body or b"")
    else:
        await pool.execute("DELETE FROM idempotency_keys WHERE principal_id = $1 AND key = $2", principal_id, key)
    return response


async def _store(pool: asyncpg.Pool, principal_id: str, key: str, status: int, content_type: str,
                 body: bytes) -> None:
    await pool.execute("UPDATE idempotency_keys SET status = $3, content_type = $4, body = $5 "
                       "WHERE principal_id = $1 AND key = $2", principal_id, key, status, content_type, bytes(body))


def handlers() -> dict[str, HandlerFn]:
    from gateway import agents, analytics, dashboard, instances, operations, templates

    found: dict[str, HandlerFn] = {}
    for module in (templates, instances, agents, operations, dashboard, analytics):
        found.update(module.HANDLERS)
    return found


def build_app(gateway: Gateway) -> web.Application:
    from gateway.dashboard import front_end

    app = web.Application(middlewares=[problems_middleware, front_end()],
                          client_max_size=gateway.settings.max_body_bytes)
    app[GATEWAY_KEY] = gateway
    table = handlers()
    for method, path, operation in openapi.operations():
        handler = table.get(operation["operationId"])
        if handler is None:
            raise RuntimeError(f"no handler for operation {operation['operationId']} ({method} {path})")
        app.router.add_route(method, path, _endpoint(gateway, operation, handler), name=operation["operationId"])
    return app


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool release without asyncpg's reset statement (advisory unlock, CLOSE ALL, UNLISTEN, RESET ALL).

    The gateway never changes session state (no SET, LISTEN, advisory locks or cursors), and asyncpg still
    rolls back a transaction left open before it calls this; skipping the statement saves a round trip to
    PostgreSQL on every release, i.e. on every query made through the pool.
    """


async def start_gateway(settings: GatewaySettings) -> Gateway:
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=settings.db_pool_size,
                                     reset=_keep_session)
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, enable_idempotence=True,
                                linger_ms=1, request_timeout_ms=10_000)
    await producer.start()
    return Gateway(settings=settings, pool=pool, producer=producer)


async def stop_gateway(gateway: Gateway) -> None:
    with contextlib.suppress(Exception):
        await gateway.producer.stop()
    with contextlib.suppress(Exception):
        await gateway.pool.close()


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    settings = GatewaySettings()

    async def run() -> None:
        gateway = await start_gateway(settings)
        runner = web.AppRunner(build_app(gateway), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, settings.host, settings.port)
        await site.start()
        log.info("gateway listening on http://%s:%d/ (docs at /docs)", settings.host, settings.port)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await runner.cleanup()
        await stop_gateway(gateway)

    asyncio.run(run())
    return 0
