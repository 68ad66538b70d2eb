"""RFC 7807 problems as exceptions, one class per status a caller handles differently.

The gateway answers every error with `application/problem+json` (`gateway/problems.py`); `problem_error`
maps status and body to the class here, so callers write `except NotFound` instead of comparing codes.
A body that is not a problem document (a proxy's HTML page, say) still becomes an `ApiError` with the
text as `detail`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class FlowlineError(Exception):
    """Anything the client raises."""


@dataclass(frozen=True)
class FieldError:
    pointer: str
    message: str


class ApiError(FlowlineError):
    """The server answered with an error status (an RFC 7807 problem)."""

    def __init__(self, status: int, problem: Mapping[str, Any] | None = None, *, method: str = "",
                 url: str = "", headers: Mapping[str, str] | None = None) -> None:
        self.status = status
        self.problem: dict[str, Any] = dict(problem or {})
        self.method, self.url = method, url
        self.headers = dict(headers or {})
        self.title: str = str(self.problem.get("title", ""))
        self.detail: str = str(self.problem.get("detail", ""))
        self.type: str = str(self.problem.get("type", ""))
        self.pointer: str | None = self.problem.get("pointer")
        self.error_id: str | None = self.problem.get("error_id")
        self.command_id: str | None = self.problem.get("command_id")
        self.errors: list[FieldError] = [FieldError(str(e.get("pointer", "")), str(e.get("message", "")))
                                         for e in self.problem.get("errors") or [] if isinstance(e, Mapping)]
        where = f" ({self.pointer})" if self.pointer else ""
        text = self.detail or self.title or "error"
        super().__init__(f"{method} {url} -> {status}: {text}{where}".strip())


class BadRequest(ApiError):
    """400: the request itself is malformed (bad JSON, bad query value)."""


class Unauthorized(ApiError):
    """401: no token, an unknown token, or a bad callback signature."""


class Forbidden(ApiError):
    """403: the token is valid but its roles (or an agent's permissions) do not allow this."""


class NotFound(ApiError):
    """404: no such template/instance/step in the caller's tenant (other tenants' things are 404 too)."""


class Conflict(ApiError):
    """409: the engine rejected the command (`detail` says why), or the resource is in the wrong state."""


class PayloadTooLarge(ApiError):
    """413: the body is over the gateway's limit."""


class ValidationFailed(ApiError):
    """422: the body or template is invalid; `errors` has every problem with its JSON pointer."""


class Unavailable(ApiError):
    """503: the gateway cannot reach the broker or the database right now; retry after `retry_after` s."""

    def __init__(self, status: int, problem: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(status, problem, **kwargs)
        self.retry_after: float | None = _retry_after(self.headers)


class TransportError(FlowlineError):
    """The server could not be reached (connection refused, timeout)."""


_BY_STATUS: dict[int, type[ApiError]] = {400: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound,
                                          409: Conflict, 413: PayloadTooLarge, 422: ValidationFailed,
                                          503: Unavailable}


def problem_error(status: int, body: Any, *, method: str = "", url: str = "",
                  headers: Mapping[str, str] | None = None) -> ApiError:
    """The exception for an error response; `body` is the decoded JSON (or the raw text)."""
    problem = body if isinstance(body, Mapping) else {"detail": str(body or "")[:500]}
    cls = _BY_STATUS.get(status, ApiError)
    return cls(status, problem, method=method, url=url, headers=headers)


def _retry_after(headers: Mapping[str, str]) -> float | None:
    raw = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            from datetime import UTC, datetime

            return max(0.0, (parsedate_to_datetime(raw) - datetime.now(UTC)).total_seconds())
        except (TypeError, ValueError):
            return None
