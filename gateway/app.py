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
import time
from collections.abc import Callable
from typing import Any

import asyncpg
from aiohttp import web
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError
from jsonschema import Draft202012Validator
from prometheus_client import Counter, Histogram

from gateway import agent_access, json_body, openapi
from gateway.calls import Call, Gateway, HandlerFn
from gateway.params import Parameters
from gateway.problems import CONTENT_TYPE as PROBLEM_CONTENT_TYPE
from gateway.problems import DATABASE_DOWN, Problem, problems_middleware, read_model_unavailable
from gateway.settings import GatewaySettings
from schemas.process import run_process, wait_for_kafka

log = logging.getLogger("flowline.gateway")
audit_log = logging.getLogger("flowline.gateway.audit")
CONVERSATION_HEADER = agent_access.CONVERSATION_HEADER  # one name for the header the access log records

REQUESTS = Counter("flowline_gateway_requests_total", "HTTP requests", ["operation", "status"])
LATENCY = Histogram("flowline_gateway_request_seconds", "HTTP request latency", ["operation"])

GATEWAY_KEY = web.AppKey("gateway", object)
DB_CONNECT_TIMEOUT = 5.0  # seconds; a PostgreSQL that does not answer is down, not slow
# checked by core.validation, not by the JSON schema
TEMPLATE_BODIES = {"createTemplate", "updateTemplate", "validateTemplate", "validateDocument"}


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
        async with asyncio.timeout(settings.body_timeout_seconds):
            return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise Problem(413, f"the request body is larger than {settings.max_body_bytes} bytes") from None
    except TimeoutError:
        # A body trickled in byte by byte would hold a connection and a task forever (slowloris).
        raise Problem(408, f"the request body did not arrive within {settings.body_timeout_seconds:g} s",
                      headers={"Connection": "close"}) from None


def _parse_json(raw: bytes, content_type: str) -> Any:
    if not raw.strip():
        return None
    if content_type not in ("application/json", "") and not content_type.endswith("+json"):
        raise Problem(415, f"send the body as application/json, not {content_type}")
    return json_body.loads(raw)


def _endpoint(gateway: Gateway, operation: dict[str, Any], handler: HandlerFn) -> Callable:
    public = operation.get("security") == []
    validator = _validator(operation)
    parameters = Parameters(operation)  # compiled once per route (gateway/params.py, ADR 9)
    name = operation["operationId"]
    has_body = "requestBody" in operation
    body_required = has_body and operation["requestBody"].get("required", False)

    async def endpoint(request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        status = 500
        principal: list[Any] = []  # set by _serve once the token is known
        try:
            try:
                response = await _serve(request, principal)
            except DATABASE_DOWN as exc:
                log.warning("read model unavailable on %s %s: %r", request.method, request.path, exc)
                raise read_model_unavailable(exc) from exc
            status = response.status
            return response
        except Problem as problem:
            status = problem.status
            raise
        finally:
            if principal and principal[0].is_agent:  # agents' calls, reads included (gateway/agent_access.py)
                await agent_access.record(gateway.pool, principal[0], request, name, status)
            REQUESTS.labels(name, str(status)).inc()
            LATENCY.labels(name).observe(time.perf_counter() - started)

    async def _serve(request: web.Request, known: list[Any]) -> web.StreamResponse:
        principal = None if public else await gateway.auth.principal(request.headers.get("Authorization"))
        if principal is not None:
            known.append(principal)
        conversation = request.headers.get(CONVERSATION_HEADER)
        if conversation and principal is not None:  # agents' calls (flowline mcp): who, in which conversation
            audit_log.info("%s %s principal=%s kind=%s conversation=%s client=%s", request.method, request.path,
                           principal.id, principal.kind, conversation[:200],
                           request.headers.get("User-Agent", "")[:100])
        values = parameters.read(request.query, request.match_info)
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
                    operation=operation, idempotency_key=key, values=values)
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
        if row["status"] is None and not await _reclaim(gateway, principal_id, key):
            raise Problem(409, "the first request with this Idempotency-Key is still in progress")
        if row["status"] is not None:
            return web.Response(status=row["status"], body=row["body"], content_type=row["content_type"],
                                headers={"Idempotent-Replayed": "true"})
    try:
        response = await handler(call)
    except Problem as problem:
        if problem.status >= 500:
            await _forget(pool, principal_id, key)
            raise
        body = json.dumps(problem.body(request.path)).encode()
        await _store(pool, principal_id, key, problem.status, PROBLEM_CONTENT_TYPE, body)
        raise
    except BaseException:
        await _forget(pool, principal_id, key)
        raise
    if isinstance(response, web.Response) and response.status < 500:
        await _store(pool, principal_id, key, response.status, response.content_type, response.body or b"")
    else:
        await _forget(pool, principal_id, key)
    return response


async def _reclaim(gateway: Gateway, principal_id: str, key: str) -> bool:
    """Take over a key whose first request never finished (the gateway died, or PostgreSQL went away before
    the answer was kept): once no request can still be running, a retry runs it again instead of hearing
    "in progress" forever. Safe: the key fixes the command id (and a trigger's instance id), so the engine
    drops a second copy of a command that did reach it."""
    settings = gateway.settings
    abandoned_after = settings.wait_seconds + settings.instance_wait_seconds + 30
    return bool(await gateway.pool.fetchval(
        "UPDATE idempotency_keys SET created_at = now() WHERE principal_id = $1 AND key = $2 AND status IS NULL "
        "AND created_at < now() - make_interval(secs => $3) RETURNING 1", principal_id, key, abandoned_after))


async def _store(pool: asyncpg.Pool, principal_id: str, key: str, status: int, content_type: str,
                 body: bytes) -> None:
    """Keep the answer for replays. If PostgreSQL is gone the caller still gets it (what was done is done);
    the key stays in flight until `_reclaim` lets a retry run again."""
    try:
        await pool.execute("UPDATE idempotency_keys SET status = $3, content_type = $4, body = $5 "
                           "WHERE principal_id = $1 AND key = $2", principal_id, key, status, content_type,
                           bytes(body))
    except DATABASE_DOWN as exc:
        log.warning("could not keep the answer for Idempotency-Key %r of %s: %r", key, principal_id, exc)


async def _forget(pool: asyncpg.Pool, principal_id: str, key: str) -> None:
    try:
        await pool.execute("DELETE FROM idempotency_keys WHERE principal_id = $1 AND key = $2", principal_id, key)
    except DATABASE_DOWN as exc:
        log.warning("could not release Idempotency-Key %r of %s: %r", key, principal_id, exc)


def handlers() -> dict[str, HandlerFn]:
    from gateway import agent_access, agents, analytics, dashboard, instances, operations, templates

    found: dict[str, HandlerFn] = {}
    for module in (templates, instances, agents, agent_access, operations, dashboard, analytics):
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
    options: dict[str, Any] = {"max_size": settings.db_pool_size, "reset": _keep_session,
                               "timeout": DB_CONNECT_TIMEOUT}
    try:
        pool = await asyncpg.create_pool(settings.database_url, min_size=1, **options)
    except DATABASE_DOWN as exc:
        # Start anyway: /health says the database is down and requests answer 503 until it is back.
        log.warning("PostgreSQL is unavailable at start (%r); connecting on demand", exc)
        pool = await asyncpg.create_pool(settings.database_url, min_size=0, **options)
    try:
        producer: AIOKafkaProducer | None = await _start_producer(settings)
    except KafkaConnectionError as exc:
        # Start anyway, as with PostgreSQL: reads answer, commands and template changes answer 503 and /health
        # says the broker is down until it is reachable (containers start in any order).
        log.warning("the Kafka broker at %s is not reachable at start (%s); commands answer 503 until it is",
                    settings.bootstrap_servers, exc)
        producer = None
    gateway = Gateway(settings=settings, pool=pool, producer=producer)
    if producer is None:
        gateway.connecting = asyncio.create_task(_connect_later(gateway), name="kafka-connect")
    await gateway.projected.listen(settings.database_url, timeout=DB_CONNECT_TIMEOUT)
    return gateway


async def _start_producer(settings: GatewaySettings) -> AIOKafkaProducer:
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, enable_idempotence=True,
                                linger_ms=1, request_timeout_ms=10_000)
    try:
        await producer.start()
    except BaseException:
        with contextlib.suppress(Exception):
            await producer.stop()
        raise
    return producer


async def _connect_later(gateway: Gateway) -> None:
    """Wait for the broker (schemas.process.wait_for_kafka), then give the gateway its producer."""
    settings = gateway.settings
    while await wait_for_kafka(settings.bootstrap_servers, gateway.closing):
        try:
            gateway.producer = await _start_producer(settings)
        except KafkaConnectionError as exc:  # it answered once and went away again: wait anew
            log.warning("the Kafka broker at %s went away while connecting (%s)", settings.bootstrap_servers, exc)
            continue
        log.info("connected to the Kafka broker at %s; commands are accepted", settings.bootstrap_servers)
        return


async def stop_gateway(gateway: Gateway) -> None:
    gateway.closing.set()
    if gateway.connecting is not None:
        gateway.connecting.cancel()
        with contextlib.suppress(BaseException):
            await gateway.connecting
    await gateway.projected.close()
    with contextlib.suppress(Exception):
        if gateway.producer is not None:
            await gateway.producer.stop()
    with contextlib.suppress(Exception):
        await gateway.pool.close()


def server_options(settings: GatewaySettings) -> dict[str, Any]:
    """aiohttp server options. keepalive_timeout is also the deadline for a request's headers: aiohttp
    closes a connection whose next request has not been parsed by then, however slowly bytes trickle in
    (its default, about an hour, let half-sent requests hold connections; issue 10.8). It is also how long an
    idle keep-alive connection stays open, so it must exceed the clients' own idle limit (aiohttp's client
    drops a connection idle for 15 s): with both at 15 s, a client reusing a connection idle for 15 s raced
    the gateway's close and got `ServerDisconnectedError` on a POST (stop 19, under load). Hence 20 s."""
    return {"keepalive_timeout": settings.header_timeout_seconds}


def main() -> int:
    settings = GatewaySettings()
    stop = asyncio.Event()

    async def run() -> None:
        gateway = await start_gateway(settings)
        runner = web.AppRunner(build_app(gateway), access_log=None, **server_options(settings))
        await runner.setup()
        site = web.TCPSite(runner, settings.host, settings.port)
        await site.start()
        log.info("gateway listening on http://%s:%d/ (docs at /docs)", settings.host, settings.port)
        await stop.wait()
        await runner.cleanup()
        await stop_gateway(gateway)

    return run_process(run, stop.set, quiet=("aiokafka", "aiohttp.access"))
