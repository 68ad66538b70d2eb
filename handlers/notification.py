"""Notification handler: signed webhooks and email (story 29.6), one attempt per request.

Webhooks carry `X-Flowline-Signature` (core.signing.sign_payload over the exact body bytes, with the
template secret named by `secret_name`, else FLOWLINE_WEBHOOK_SIGNING_KEY) and `Idempotency-Key` (the
request id), so a receiver drops the copy a redelivery may send. Emails carry the same key in
`X-Flowline-Idempotency-Key` and a Message-ID derived from it.

Outcome: a 2xx or an accepted email -> succeeded; 408, 429, 5xx, timeouts and connection errors ->
failed, retryable (the engine schedules the retry); other 4xx, refused recipients, SSRF refusals,
missing secrets -> failed, not retryable. Failure notices (side requests) are delivered the same way but
report nothing: the failed step does not wait for them.

Ports: `WebhookSender` and `EmailSender`, each with a real and a fake implementation.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import getaddresses, parseaddr
from typing import Any, Protocol

from core.commands import ReportStepResult
from core.effects import StepRequest
from core.signing import sign_payload
from handlers import metrics
from handlers.http import HttpError, SafeHttpClient
from handlers.rendering import MissingSecret, Renderer
from handlers.results import failed, is_side_request, succeeded

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Flowline-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
DEFAULT_TIMEOUT_SECONDS = 10.0


class DeliveryError(Exception):
    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


# ------------------------------------------------------------------------------------------------ webhooks

@dataclass(frozen=True)
class Webhook:
    url: str
    body: bytes
    headers: Mapping[str, str]
    timeout: float = DEFAULT_TIMEOUT_SECONDS


class WebhookSender(Protocol):
    async def send(self, webhook: Webhook) -> int:
        """Deliver; return the receiver's 2xx status or raise DeliveryError."""
        ...


def _retryable_status(status: int) -> bool:
    return status >= 500 or status in (408, 429)


class HttpWebhookSender:
    def __init__(self, http: SafeHttpClient) -> None:
        self.http = http

    async def send(self, webhook: Webhook) -> int:
        try:
            exchange = await self.http.request("POST", webhook.url, headers=webhook.headers, body=webhook.body,
                                               timeout=webhook.timeout)
        except HttpError as exc:
            raise DeliveryError(str(exc), retryable=exc.retryable) from None
        status = exchange.response.status
        if not 200 <= status < 300:
            raise DeliveryError(f"webhook receiver answered HTTP {status}", retryable=_retryable_status(status))
        return status


@dataclass
class FakeWebhookSender:
    sent: list[Webhook] = field(default_factory=list)
    fail_with: DeliveryError | None = None

    async def send(self, webhook: Webhook) -> int:
        if self.fail_with is not None:
            raise self.fail_with
        self.sent.append(webhook)
        return 200


# ------------------------------------------------------------------------------------------------ email

@dataclass(frozen=True)
class Email:
    to: tuple[str, ...]
    subject: str
    text: str
    idempotency_key: str


class EmailSender(Protocol):
    async def send(self, email: Email) -> None:
        """Hand the message to the mail server, or raise DeliveryError."""
        ...


def message_id(idempotency_key: str) -> str:
    return f"<{hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]}@flowline>"


SMTP_LINE_LIMIT = 998  # RFC 5321: the longest line a 7bit message may have


def compose(sender: str, email: Email) -> bytes:
    """The message for `email`, as the mail server receives it (before SMTP's dot-stuffing and CRLFs).

    Plain ASCII without line breaks in the headers (what Flowline's own notices nearly always are) is
    written out directly as a 7bit text/plain message: building it as a `Message` and flattening it again
    (`email.generator`, in aiosmtplib's `send_message`) was the largest share of the approval handler's
    CPU under load (issue 15: `EmailMessage`'s header registry first, then, once that path was a `MIMEText`,
    the generator). Anything else goes through `EmailMessage` as before, which encodes non-ASCII text and
    long lines and refuses a header value with a line break (no header injection either way)."""
    headers = {"From": sender, "To": ", ".join(email.to), "Subject": email.subject,
               "Message-ID": message_id(email.idempotency_key), "X-Flowline-Idempotency-Key": email.idempotency_key}
    text = email.text.replace("\r\n", "\n")
    plain = text.isascii() and "\r" not in text and all(len(line) <= SMTP_LINE_LIMIT for line in text.split("\n"))
    if plain and all(value.isascii() and "\r" not in value and "\n" not in value
                     and len(name) + 2 + len(value) <= SMTP_LINE_LIMIT for name, value in headers.items()):
        head = "".join(f"{name}: {value}\n" for name, value in headers.items())
        return (f"{head}MIME-Version: 1.0\nContent-Type: text/plain; charset=\"us-ascii\"\n"
                f"Content-Transfer-Encoding: 7bit\n\n{text}").encode("ascii")
    message = EmailMessage()
    for name, value in headers.items():
        message[name] = value
    message.set_content(email.text)
    return message.as_bytes()


class SmtpEmailSender:
    """Email through an SMTP server, over connections kept open between messages.

    Why kept open: a session per message (connect, greeting, EHLO, optional STARTTLS and login, QUIT) cost
    the approval handler more CPU than the engine spent on the whole workflow (issue 15, docs/performance.md);
    a message on an open connection is MAIL, RCPT and DATA only. Up to `pool_size` idle connections are kept,
    each for at most `idle_seconds`. A kept connection the server has closed meanwhile is noticed when the
    message fails on it with a disconnection, and the message is sent once more on a new connection (the
    Message-ID, derived from the idempotency key, lets a mailbox drop the rare copy). Any other failure
    closes the connection it happened on, so a session in an unknown state is never reused.

    At most `pool_size` messages are in a session at once (the others wait for one to end), so a burst
    reuses the kept connections instead of opening one per message beyond them and closing it right after:
    at the instrument's procurement load a quarter of the messages paid a whole session that way, and each
    new session also asked the resolver for the local host's name (aiosmtplib's EHLO default, on a thread).
    That name is now asked once per sender (docs/performance.md, "The analytics triggers and the approval
    handler's mail").
    """

    def __init__(self, *, host: str, port: int, sender: str, user: str = "", password: str = "",
                 starttls: bool = False, timeout: float = 30.0, pool_size: int = 8, idle_seconds: float = 30.0,
                 clock=time.monotonic) -> None:
        self.host, self.port, self.sender = host, port, sender
        self.user, self.password, self.starttls, self.timeout = user, password, starttls, timeout
        self.pool_size, self.idle_seconds, self.clock = pool_size, idle_seconds, clock
        self._idle: list[tuple[Any, float]] = []  # (connected aiosmtplib.SMTP, when it was last used)
        self._sessions = asyncio.Semaphore(pool_size)  # messages in a session at once
        self._local_hostname: asyncio.Future | None = None  # what EHLO names this host, asked once
        self.connections_opened = 0

    async def send(self, email: Email) -> None:
        async with self._sessions:
            await self._send(email)

    async def _send(self, email: Email) -> None:
        import aiosmtplib

        message = compose(self.sender, email)
        # the envelope as aiosmtplib's send_message took it from the headers: "Name <a@b>" -> a@b
        sender = parseaddr(self.sender)[1] or self.sender
        recipients = [address for _, address in getaddresses(list(email.to)) if address]
        client = None
        try:
            client = self._kept()
            if client is not None:
                try:
                    await client.sendmail(sender, recipients, message)
                except (aiosmtplib.SMTPServerDisconnected, ConnectionError):
                    client.close()  # closed by the server while idle: once more, on a new connection
                    client = None
                else:
                    self._keep(client)
                    return
            client = await self._connect()
            await client.sendmail(sender, recipients, message)
            self._keep(client)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            self._drop(client)
            raise DeliveryError(f"mail server refused the recipients: {exc}", retryable=False) from None
        except aiosmtplib.SMTPResponseException as exc:
            self._drop(client)
            raise DeliveryError(f"mail server answered {exc.code}: {exc.message}", retryable=exc.code < 500) from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            self._drop(client)
            raise DeliveryError(f"mail server unreachable: {type(exc).__name__}: {exc}", retryable=True) from None
        except BaseException:
            self._drop(client)
            raise

    async def _connect(self) -> Any:
        import aiosmtplib

        if self._local_hostname is None:  # the first connections share the one question
            self._local_hostname = asyncio.get_running_loop().run_in_executor(None, socket.getfqdn)
        client = aiosmtplib.SMTP(hostname=self.host, port=self.port, username=self.user or None,
                                 password=self.password or None, start_tls=self.starttls, use_tls=False,
                                 timeout=self.timeout, local_hostname=await asyncio.shield(self._local_hostname))
        await client.connect()
        self.connections_opened += 1
        return client

    def _kept(self) -> Any:
        """The most recently used idle connection still young enough; older ones are closed."""
        now = self.clock()
        while self._idle:
            client, used = self._idle.pop()
            if now - used <= self.idle_seconds and client.is_connected:
                return client
            client.close()
        return None

    def _keep(self, client: Any) -> None:
        if len(self._idle) < self.pool_size and client.is_connected:
            self._idle.append((client, self.clock()))
        else:
            self._drop(client)

    @staticmethod
    def _drop(client: Any) -> None:
        if client is not None:
            client.close()


@dataclass
class FakeEmailSender:
    sent: list[Email] = field(default_factory=list)
    fail_with: DeliveryError | None = None

    async def send(self, email: Email) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self.sent.append(email)


# ------------------------------------------------------------------------------------------------ handler

def canonical_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


def default_body(request: StepRequest, config: Mapping[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "workflow.notification", "instance_id": request.instance_id, "template_id": request.template_id,
        "tenant_id": request.tenant_id, "step": request.step, "step_name": request.step_name,
        "idempotency_key": request.request_id,
    }
    if config.get("event") is not None:
        body["event"] = config["event"]
    if config.get("text"):
        body["text"] = config["text"]
    return body


class NotificationHandler:
    def __init__(self, *, webhooks: WebhookSender, emails: EmailSender, renderer: Renderer,
                 default_signing_key: bytes, clock=time.time) -> None:
        self.webhooks = webhooks
        self.emails = emails
        self.renderer = renderer
        self.default_signing_key = default_signing_key
        self.clock = clock

    async def handle(self, request: StepRequest) -> ReportStepResult | None:
        try:
            output = await self.deliver(request, dict(request.config or {}))
        except DeliveryError as exc:
            metrics.DELIVERIES.labels(str((request.config or {}).get("channel", "webhook")), "failed").inc()
            if is_side_request(request):
                log.warning("side notice %s was not delivered: %s", request.request_id, exc)
                return None
            return failed(request, str(exc), retryable=exc.retryable)
        if is_side_request(request):
            return None
        return succeeded(request, output)

    async def deliver(self, request: StepRequest, config: dict[str, Any]) -> dict[str, Any]:
        channel = str(config.get("channel") or config.get("type") or "webhook")
        try:
            rendered, _ = await self.renderer.render(request, {k: v for k, v in config.items() if k != "secret_name"})
        except MissingSecret as exc:
            raise DeliveryError(str(exc), retryable=False) from None
        if channel == "email":
            return await self._email(request, rendered)
        if channel == "webhook":
            return await self._webhook(request, rendered, config.get("secret_name"))
        raise DeliveryError(f"unknown notification channel {channel!r}", retryable=False)

    async def signing_key(self, request: StepRequest, secret_name: Any) -> bytes:
        if not secret_name:
            return self.default_signing_key
        try:
            return (await self.renderer.secret(request, str(secret_name))).encode()
        except MissingSecret as exc:
            raise DeliveryError(str(exc), retryable=False) from None

    async def _webhook(self, request: StepRequest, config: Mapping[str, Any], secret_name: Any) -> dict[str, Any]:
        url = config.get("url")
        if not isinstance(url, str) or not url:
            raise DeliveryError("a webhook notification needs a url", retryable=False)
        body_value = config.get("body") if config.get("body") is not None else default_body(request, config)
        body = body_value.encode() if isinstance(body_value, str) else canonical_json(body_value)
        key = await self.signing_key(request, secret_name)
        headers = {str(k): str(v) for k, v in (config.get("headers") or {}).items()}
        headers.update({
            "Content-Type": "application/json",
            IDEMPOTENCY_HEADER: request.request_id,
            SIGNATURE_HEADER: sign_payload(key, body, int(self.clock())),
            "User-Agent": "Flowline-Webhooks/1",
        })
        timeout = float(config.get("timeout_seconds") or DEFAULT_TIMEOUT_SECONDS)
        status = await self.webhooks.send(Webhook(url=url, body=body, headers=headers, timeout=timeout))
        metrics.DELIVERIES.labels("webhook", "delivered").inc()
        return {"channel": "webhook", "status": status}

    async def _email(self, request: StepRequest, config: Mapping[str, Any]) -> dict[str, Any]:
        to = config.get("to")
        recipients = tuple(str(t) for t in (to if isinstance(to, list) else [to]) if t)
        if not recipients:
            raise DeliveryError("an email notification needs `to`", retryable=False)
        event = config.get("event") if isinstance(config.get("event"), Mapping) else None
        subject = str(config.get("subject") or (f"Workflow step failed: {event.get('name')}" if event else
                                                f"Workflow notification: {request.step_name}"))
        text = str(config.get("text") or (json.dumps(event, indent=2) if event else
                                          f"Instance {request.instance_id}, step {request.step} "
                                          f"({request.step_name})."))
        await self.emails.send(Email(to=recipients, subject=subject, text=text, idempotency_key=request.request_id))
        metrics.DELIVERIES.labels("email", "delivered").inc()
        return {"channel": "email", "to": list(recipients)}
