"""The SMTP sender keeps its connection between messages, and survives the server closing it (issue 15).

Why: a session per message (connect, greeting, EHLO, QUIT) made the approval handler the most expensive
process of an approval workflow; these tests pin that messages share a connection and that a connection
the server dropped is replaced without losing the message. Against the stack's real mail catcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import mailbox
import socket
from pathlib import Path

import pytest

from deploy import mailcatcher
from handlers.notification import DeliveryError, Email, SmtpEmailSender


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.asynccontextmanager
async def catcher(directory: Path, port: int):
    stop = asyncio.Event()
    server = asyncio.create_task(mailcatcher.serve(directory, "127.0.0.1", port, stop))
    for _ in range(200):
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            break
        await asyncio.sleep(0.05)
    try:
        yield
    finally:
        stop.set()
        await server


def email(n: int) -> Email:
    return Email(to=("cfo@acme.test",), subject=f"Approve wf_{n}", text="Please approve.", idempotency_key=f"k{n}")


def subjects(directory: Path) -> list[str]:
    return sorted(m["Subject"] for m in mailbox.Maildir(directory))


async def test_messages_share_one_connection(tmp_path: Path) -> None:
    port, directory = _free_port(), mailcatcher.mail_dir(tmp_path)
    sender = SmtpEmailSender(host="127.0.0.1", port=port, sender="flowline@localhost")
    async with catcher(directory, port):
        for n in range(3):
            await sender.send(email(n))
        await asyncio.gather(*(sender.send(email(n)) for n in range(3, 6)))  # at once: more connections
    assert subjects(directory) == [f"Approve wf_{n}" for n in range(6)]
    assert 1 <= sender.connections_opened <= 4  # was one per message


class Hop:
    """A TCP hop in front of the mail server that can cut every open connection, as an idle timeout does."""

    def __init__(self, target: int) -> None:
        self.target, self.writers = target, []

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._pipe, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _pipe(self, reader, writer) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        self.writers += [writer, up_writer]

        async def copy(src, dst):
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(copy(reader, up_writer), copy(up_reader, writer))

    def cut(self) -> None:
        for writer in self.writers:
            writer.transport.abort()
        self.writers.clear()

    async def stop(self) -> None:
        self.cut()
        self.server.close()


async def test_a_connection_the_server_closed_is_replaced_and_the_message_delivered(tmp_path: Path) -> None:
    port, directory = _free_port(), mailcatcher.mail_dir(tmp_path)
    async with catcher(directory, port):
        hop = Hop(port)
        sender = SmtpEmailSender(host="127.0.0.1", port=await hop.start(), sender="flowline@localhost")
        await sender.send(email(1))
        hop.cut()
        await asyncio.sleep(0.05)
        await sender.send(email(2))
        await sender.send(email(3))
        await hop.stop()
    assert subjects(directory) == ["Approve wf_1", "Approve wf_2", "Approve wf_3"]
    assert sender.connections_opened == 2


async def test_no_server_is_a_retryable_failure(tmp_path: Path) -> None:
    sender = SmtpEmailSender(host="127.0.0.1", port=_free_port(), sender="flowline@localhost", timeout=2)
    with pytest.raises(DeliveryError) as refused:
        await sender.send(email(1))
    assert refused.value.retryable


async def test_what_the_server_keeps_is_what_was_sent(tmp_path: Path) -> None:
    port, directory = _free_port(), mailcatcher.mail_dir(tmp_path)
    sender = SmtpEmailSender(host="127.0.0.1", port=port, sender="flowline@localhost")
    text = "Hello,\n.a line that starts with a dot\n..two\n\nApprove: http://x/approve\n"
    async with catcher(directory, port):
        await sender.send(Email(to=("cfo@acme.test", "cto@acme.test"), subject="Approval needed: CFO",
                                text=text, idempotency_key="wfi_1:2:1:alice"))
    [kept] = list(mailbox.Maildir(directory))
    assert (kept["Subject"], kept["To"], kept["X-RcptTo"]) == ("Approval needed: CFO", "cfo@acme.test, cto@acme.test",
                                                               "cfo@acme.test, cto@acme.test")
    assert kept.get_payload() == text


async def test_display_names_stay_in_the_headers_not_in_the_envelope(tmp_path: Path) -> None:
    port, directory = _free_port(), mailcatcher.mail_dir(tmp_path)
    sender = SmtpEmailSender(host="127.0.0.1", port=port, sender="Flowline <flowline@localhost>")
    async with catcher(directory, port):
        # a notification step's `to` may hold display names, and several addresses in one string
        await sender.send(Email(to=("Finance <fin@acme.test>, cfo@acme.test", "cto@acme.test"),
                                subject="Payment failed", text="Step 3 failed.\n", idempotency_key="req_1"))
    [kept] = list(mailbox.Maildir(directory))
    assert kept["X-MailFrom"] == "flowline@localhost"
    assert kept["X-RcptTo"] == "fin@acme.test, cfo@acme.test, cto@acme.test"
    assert (kept["From"], kept["To"]) == ("Flowline <flowline@localhost>",
                                          "Finance <fin@acme.test>, cfo@acme.test, cto@acme.test")


async def test_a_burst_reuses_the_kept_connections(tmp_path: Path, monkeypatch) -> None:
    """More messages at once than connections kept: they take turns on `pool_size` sessions, instead of
    opening a connection per message beyond those and closing it after (issue 15), and the local host's
    name for EHLO is asked once, not on a thread per new connection."""
    asked = []
    real_getfqdn = socket.getfqdn
    monkeypatch.setattr(socket, "getfqdn", lambda *a: asked.append(a) or real_getfqdn(*a))
    port, directory = _free_port(), mailcatcher.mail_dir(tmp_path)
    sender = SmtpEmailSender(host="127.0.0.1", port=port, sender="flowline@localhost", pool_size=3)
    async with catcher(directory, port):
        await asyncio.gather(*(sender.send(email(n)) for n in range(30)))
        await asyncio.gather(*(sender.send(email(n)) for n in range(30, 60)))
    assert subjects(directory) == sorted(f"Approve wf_{n}" for n in range(60))
    assert 1 <= sender.connections_opened <= 3
    assert len(asked) == 1
