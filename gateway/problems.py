"""RFC 7807 problem documents, and the middleware that guarantees every error is one.

Handlers raise `Problem(status, title, detail, pointer=..., errors=[...])`; the middleware turns it, an
aiohttp HTTP error, or any unexpected exception into `application/problem+json`. An unexpected exception
becomes a 500 whose body carries only an error id; the traceback goes to the log under that id, never to
the client.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from aiohttp import web

log = logging.getLogger("flowline.gateway")

PROBLEM_TYPE = "https://flowline.dev/problems/"
CONTENT_TYPE = "application/problem+json"

TITLES = {
    400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found", 405: "Method not allowed",
    408: "Request timeout", 409: "Conflict", 413: "Payload too large", 415: "Unsupported media type",
    422: "Unprocessable entity", 500: "Internal server error", 503: "Service unavailable", 504: "Gateway timeout",
}
SLUGS = {
    400: "bad-request", 401: "unauthorized", 403: "forbidden", 404: "not-found", 405: "method-not-allowed",
    408: "request-timeout", 409: "conflict", 413: "payload-too-large", 415: "unsupported-media-type",
    422: "validation-error", 500: "internal-error", 503: "unavailable", 504: "timeout",
}


RETRY_AFTER_SECONDS = 5
# What asyncpg raises when PostgreSQL cannot be reached or goes away mid-request (refused, reset, shut
# down, starting up, connect timeout): the read model is unavailable, not the request wrong.
DATABASE_DOWN = (OSError, TimeoutError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
                 asyncpg.CannotConnectNowError, asyncpg.AdminShutdownError, asyncpg.CrashShutdownError)


class Problem(Exception):
    def __init__(self, status: int, detail: str, *, title: str | None = None, pointer: str | None = None,
                 errors: list[dict[str, str]] | None = None, headers: dict[str, str] | None = None,
                 **extra: Any) -> None:
        super().__init__(detail)
        self.headers = dict(headers or {})
        self.status = status
        self.detail = detail
        self.title = title or TITLES.get(status, "Error")
        self.pointer = pointer
        self.errors = errors
        self.extra = extra

    def body(self, instance: str = "") -> dict[str, Any]:
        doc: dict[str, Any] = {"type": PROBLEM_TYPE + SLUGS.get(self.status, "error"), "title": self.title,
                               "status": self.status, "detail": self.detail}
        if instance:
            doc["instance"] = instance
        if self.pointer is not None:
            doc["pointer"] = self.pointer
        if self.errors:
            doc["errors"] = self.errors
        doc.update(self.extra)
        return doc


def read_model_unavailable(exc: BaseException) -> Problem:
    """503 + Retry-After: every read, and every command (authorised against the read model), can be
    retried once PostgreSQL is back; a 500 would tell the client its request was at fault (issue 9.6)."""
    return Problem(503, f"the read model (PostgreSQL) is unavailable ({type(exc).__name__}); retry later",
                   title="Read model unavailable", headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
                   unavailable="database")


def problem_response(problem: Problem, instance: str = "", headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=problem.status, text=json.dumps(problem.body(instance)), content_type=CONTENT_TYPE,
                        headers=headers)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def problems_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Problem as problem:
        headers = {"WWW-Authenticate": 'Bearer realm="flowline"'} if problem.status == 401 else {}
        return problem_response(problem, request.path, {**headers, **problem.headers})
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        detail = {404: f"no route for {request.path}",
                  405: f"{request.method} is not allowed on {request.path}",
                  413: "the request body is too large"}.get(exc.status, exc.reason)
        return problem_response(Problem(exc.status, detail), request.path,
                                {k: v for k, v in exc.headers.items() if k.lower() == "allow"})
    except Exception:
        error_id = uuid.uuid4().hex
        log.exception("unhandled error %s on %s %s", error_id, request.method, request.path)
        return problem_response(Problem(500, f"an unexpected error occurred; quote error id {error_id}",
                                        error_id=error_id), request.path)
