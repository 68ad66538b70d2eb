"""External handler: one HTTP call to an ERP, CRM or any API (story 29.13).

The engine sends the step's request with `{{trigger.*}}`/`{{steps.*}}` rendered; this handler fills in
`{{secrets.*}}` (decrypted, never logged, redacted from the result), `{{tenant.*}}` and `{{payos.*}}`,
makes one attempt within `timeout_seconds`, and reports the response as data: `succeeded` with
`{"status", "headers", "body"}` for ANY HTTP status, because the core judges `success_condition` and
`extract_fields` (core/steps/external.py). Only a missing response is a failure here: timeouts and
connection errors are retryable, an SSRF refusal, a bad URL, a missing secret or a body over 256 KiB are
not. Retries are the engine's durable timers, never a loop in here.

Async mode: the request also carries the step's callback URL and per-attempt callback token
(`X-Flowline-Callback-Url`, `X-Flowline-Callback-Token`, and `{{callback.url}}`/`{{callback.token}}` in the
body); the outcome is `accepted` and the step waits for `complete-external`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from core.commands import ReportStepResult
from core.effects import StepRequest
from core.signing import callback_token
from handlers.http import HttpError, SafeHttpClient
from handlers.rendering import MissingSecret, Renderer, redact
from handlers.results import accepted, failed, succeeded

DEFAULT_TIMEOUT_SECONDS = 30.0
MAX_TIMEOUT_SECONDS = 300.0
CALLBACK_URL_HEADER = "X-Flowline-Callback-Url"
CALLBACK_TOKEN_HEADER = "X-Flowline-Callback-Token"


def callback_url(public_url: str, instance_id: str, step: int) -> str:
    return f"{public_url.rstrip('/')}/v1/workflows/instances/{instance_id}/steps/{step}/complete-external"


def with_query(url: str, query: Any) -> str:
    if not isinstance(query, Mapping) or not query:
        return url
    parts = urlsplit(url)
    extra = urlencode([(str(k), _text(v)) for k, v in query.items()])
    return urlunsplit(parts._replace(query=f"{parts.query}&{extra}" if parts.query else extra))


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def encode_body(body: Any) -> tuple[bytes | None, str | None]:
    if body is None:
        return None, None
    if isinstance(body, str):
        return body.encode(), "text/plain; charset=utf-8"
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode(), "application/json"


def parse_body(raw: bytes, content_type: str) -> Any:
    text = raw.decode("utf-8", errors="replace")
    if "json" in content_type.lower() or text[:1] in ("{", "["):
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


class ExternalHandler:
    def __init__(self, *, http: SafeHttpClient, renderer: Renderer, callback_key: bytes, public_url: str) -> None:
        self.http = http
        self.renderer = renderer
        self.callback_key = callback_key
        self.public_url = public_url

    def callback(self, request: StepRequest) -> dict[str, str]:
        return {"url": callback_url(self.public_url, request.instance_id, request.step),
                "token": callback_token(self.callback_key, request.instance_id, request.step, request.attempt)}

    async def handle(self, request: StepRequest) -> ReportStepResult:
        config = dict(request.config or {})
        is_async = str(config.get("mode", "sync")).lower() == "async"
        extra = {"callback": self.callback(request)} if is_async else {}
        parts = {k: config.get(k) for k in ("url", "headers", "body", "query")}
        try:
            rendered, secrets = await self.renderer.render(request, parts, extra)
        except MissingSecret as exc:
            return failed(request, str(exc), retryable=False)
        method = str(config.get("method") or "GET").upper()
        url = with_query(str(rendered.get("url") or ""), rendered.get("query"))
        body, content_type = encode_body(rendered.get("body"))
        headers = {str(k): _text(v) for k, v in (rendered.get("headers") or {}).items()}
        if content_type and not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = content_type
        headers["Idempotency-Key"] = request.request_id
        if is_async:
            headers[CALLBACK_URL_HEADER] = extra["callback"]["url"]
            headers[CALLBACK_TOKEN_HEADER] = extra["callback"]["token"]
        timeout = min(float(config.get("timeout_seconds") or DEFAULT_TIMEOUT_SECONDS), MAX_TIMEOUT_SECONDS)
        try:
            exchange = await self.http.request(method, url, headers=headers, body=body, timeout=timeout)
        except HttpError as exc:
            return failed(request, redact(f"{method} {_safe_url(url)}: {exc}", secrets), retryable=exc.retryable)
        response = exchange.response
        output = {
            "status": response.status,
            "headers": dict(response.headers),
            "body": parse_body(response.body, response.headers.get("content-type", "")),
        }
        if exchange.hops:
            output["redirects"] = [{"status": h.status, "url": _safe_url(h.url)} for h in exchange.hops]
        output = redact(output, secrets)
        return accepted(request, output) if is_async else succeeded(request, output)


def _safe_url(url: str) -> str:
    """The URL without its query string and userinfo (either may carry a secret)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
