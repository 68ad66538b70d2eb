"""Composition root of a handler process: `flowline handler <kind>` / `python -m handlers <kind>`.

Builds the real ports from the environment (HandlerSettings), wires them into the kind's handler, and
runs the at-least-once runtime until SIGTERM/SIGINT, which lets in-flight requests finish and commits
their offsets before exiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import start_http_server

from handlers.http import real_client
from handlers.rendering import PostgresSecretSource, Renderer, StaticSecretSource
from handlers.runtime import Handle, HandlerRuntime
from handlers.settings import HandlerSettings
from schemas.process import run_process
from schemas.topics import STEP_KINDS

log = logging.getLogger("flowline.handlers")


@dataclass
class Wiring:
    handle: Handle
    closers: list[Callable[[], Awaitable[Any]]] = field(default_factory=list)

    async def close(self) -> None:
        for close in reversed(self.closers):
            with contextlib.suppress(Exception):
                await close()


async def keep_session(connection: Any) -> None:
    """The pool's reset: nothing to undo, so no round trip.

    asyncpg's default reset sends `SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL` every
    time a connection goes back to the pool: for the approval handler, three extra round trips per approval
    and a large share of its and PostgreSQL's CPU (issue 15). The handlers' queries are single statements
    that never change session state (no SET, LISTEN, cursors or advisory locks); a transaction left open is
    still rolled back by the pool itself before this is called."""


async def open_pool(database_url: str) -> Any:
    """The handlers' connection pool to the read model's database (secrets, directory, approval log)."""
    import asyncpg

    return await asyncpg.create_pool(database_url, min_size=1, max_size=4, reset=keep_session)


async def build(kind: str, settings: HandlerSettings) -> Wiring:
    """The real ports for one kind of handler."""
    closers: list[Callable[[], Awaitable[Any]]] = []
    pool = None
    if settings.database_url:
        pool = await open_pool(settings.database_url)
        closers.append(pool.close)
    if pool is not None:
        from schemas.secrets import SecretBox

        secrets: Any = PostgresSecretSource(pool, SecretBox.from_env(), ttl=settings.secrets_ttl_seconds)
    else:
        log.warning("DATABASE_URL is not set: templates' {{secrets.*}} cannot be resolved")
        secrets = StaticSecretSource()
    renderer = Renderer(secrets, settings.tenants, settings.payos())
    http, transport = real_client(settings.allow_private_networks)
    closers.append(transport.close)

    if kind == "external":
        from handlers.external import ExternalHandler

        handler: Any = ExternalHandler(http=http, renderer=renderer, callback_key=settings.callback_key,
                                       public_url=settings.public_url)
    elif kind == "notification":
        from handlers.notification import HttpWebhookSender, NotificationHandler

        handler = NotificationHandler(webhooks=HttpWebhookSender(http), emails=smtp_sender(settings),
                                      renderer=renderer, default_signing_key=settings.webhook_signing_key)
    elif kind == "action":
        from handlers.action import ActionHandler, KafkaPaymentGateway, default_adapters
        from handlers.payment_relay import PaymentResultRelay, RelayTopics

        gateway = KafkaPaymentGateway(bootstrap_servers=settings.bootstrap_servers,
                                      commands_topic=settings.payments_commands_topic,
                                      results_topic=settings.payments_results_topic)
        await gateway.start()
        closers.append(gateway.stop)
        relay = PaymentResultRelay(
            bootstrap_servers=settings.bootstrap_servers, session_timeout_ms=settings.session_timeout_ms,
            topics=RelayTopics(results=settings.payments_results_topic, commands=settings.results_topic,
                               group_id=f"{settings.topic_prefix}flowline-payment-relay"))
        await relay.start()
        closers.append(relay.stop)
        handler = ActionHandler(default_adapters(gateway, http), renderer,
                                default_timeout=settings.payment_timeout_seconds)
    elif kind == "approval":
        from handlers.approval import ApprovalHandler, PostgresApprovalLog, PostgresDirectory
        from handlers.notification import HttpWebhookSender

        if pool is None:
            raise RuntimeError("the approval handler needs DATABASE_URL (principals, approval_requests)")
        handler = ApprovalHandler(directory=PostgresDirectory(pool), log_store=PostgresApprovalLog(pool),
                                  webhooks=HttpWebhookSender(http), emails=smtp_sender(settings),
                                  signing_key=settings.webhook_signing_key, public_url=settings.public_url)
    else:
        raise ValueError(f"unknown handler kind {kind!r}; expected one of {STEP_KINDS}")
    return Wiring(handler.handle, closers)


def smtp_sender(settings: HandlerSettings) -> Any:
    from handlers.notification import SmtpEmailSender

    return SmtpEmailSender(host=settings.smtp_host, port=settings.smtp_port, sender=settings.smtp_from,
                           user=settings.smtp_user, password=settings.smtp_password,
                           starttls=settings.smtp_starttls, timeout=settings.smtp_timeout_seconds)


class HandlerProcess:
    """One handler kind: its wiring and its runtime (also used in-process by tests)."""

    def __init__(self, kind: str, settings: HandlerSettings | None = None) -> None:
        self.kind = kind
        self.settings = settings or HandlerSettings.from_env(kind)
        self.runtime: HandlerRuntime | None = None

    async def run(self) -> None:
        wiring = await build(self.kind, self.settings)
        self.runtime = HandlerRuntime(self.kind, wiring.handle, self.settings)
        try:
            await self.runtime.run()
        finally:
            await wiring.close()

    def stop(self) -> None:
        if self.runtime is not None:
            self.runtime.stop()


def main(kind: str) -> int:
    process = HandlerProcess(kind)
    if process.settings.metrics_port:
        start_http_server(process.settings.metrics_port, addr="127.0.0.1")
    running: list[asyncio.Task] = []

    async def run() -> None:
        running.extend(t for t in [asyncio.current_task()] if t is not None)
        await process.run()

    def stop() -> None:
        if process.runtime is None:
            for task in running:
                task.cancel()  # still wiring up: nothing in flight yet
        process.stop()

    return run_process(run, stop)
