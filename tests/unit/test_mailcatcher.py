"""The dev/test stack's mail catcher keeps every message it receives, and the handlers use it by default.

Why: with no mail server on a developer's machine every approval email failed against port 25; the stack
now runs deploy/mailcatcher.py and points FLOWLINE_SMTP_HOST/PORT at it unless the developer set them.
"""

from __future__ import annotations

import asyncio
import mailbox
import socket
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import pytest

from deploy import mailcatcher
from deploy import stackctl as stack


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_a_message_sent_to_the_catcher_lands_in_its_maildir(tmp_path: Path) -> None:
    port, stop = _free_port(), asyncio.Event()
    directory = mailcatcher.mail_dir(tmp_path)
    server = asyncio.create_task(mailcatcher.serve(directory, "127.0.0.1", port, stop))
    try:
        for _ in range(100):
            if (directory / "new").exists():
                break
            await asyncio.sleep(0.05)
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = "flowline@localhost", "cfo@acme.test", "Approve wf_1"
        message.set_content("Please approve.")
        await aiosmtplib.send(message, hostname="127.0.0.1", port=port)
    finally:
        stop.set()
        await server
    kept = list(mailbox.Maildir(directory))
    assert [m["Subject"] for m in kept] == ["Approve wf_1"]
    assert "Please approve." in kept[0].get_payload()
    # the envelope, as aiosmtpd's Mailbox recorded it, and nothing left half-written in tmp/
    assert (kept[0]["X-MailFrom"], kept[0]["X-RcptTo"]) == ("flowline@localhost", "cfo@acme.test")
    assert list((directory / "tmp").iterdir()) == []


async def test_every_message_is_its_own_file_and_arrives_as_sent(tmp_path: Path) -> None:
    port, stop = _free_port(), asyncio.Event()
    directory = mailcatcher.mail_dir(tmp_path)
    server = asyncio.create_task(mailcatcher.serve(directory, "127.0.0.1", port, stop))
    sent = []
    try:
        for _ in range(100):
            if (directory / "new").exists():
                break
            await asyncio.sleep(0.05)
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port)
        await client.connect()
        for n in range(3):  # one kept connection, as the handlers send
            message = EmailMessage()
            message["From"], message["To"], message["Subject"] = "flowline@localhost", f"a{n}@acme.test", f"n{n}"
            message.set_content(f"line one\n.leading dot {n}\nlast line")
            await client.send_message(message)
            sent.append(message)
        await client.quit()
    finally:
        stop.set()
        await server
    kept = sorted(mailbox.Maildir(directory), key=lambda m: m["Subject"])
    assert [(m["Subject"], m["X-RcptTo"]) for m in kept] == [(f"n{n}", f"a{n}@acme.test") for n in range(3)]
    assert [m.get_payload() for m in kept] == [m.get_content() for m in sent]


def test_the_stack_points_the_handlers_at_its_catcher(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLOWLINE_SMTP_HOST", raising=False)
    monkeypatch.delenv("FLOWLINE_SMTP_PORT", raising=False)
    for name in ("dev", "test"):
        profile = stack.Profile.load(name, env={})
        env = profile.process_env()
        assert (env["FLOWLINE_SMTP_HOST"], env["FLOWLINE_SMTP_PORT"]) == ("127.0.0.1", str(profile.gateway_port + 3))
        assert env["FLOWLINE_MAILCATCHER_PORT"] == env["FLOWLINE_SMTP_PORT"]
    assert "mailcatcher" in [spec.name for spec in stack.PROCESSES]


def test_a_developers_own_smtp_server_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWLINE_SMTP_HOST", "mail.example.test")
    env = stack.Profile.load("dev", env={}).process_env()
    assert "FLOWLINE_SMTP_HOST" not in env and "FLOWLINE_SMTP_PORT" not in env
