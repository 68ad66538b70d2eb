"""The email the SMTP sender hands over: cheap for plain ASCII, the same as before for anything else."""

from __future__ import annotations

import email as email_lib
from email import policy

import pytest

from handlers.notification import Email, compose, message_id


def parsed(message: bytes) -> email_lib.message.EmailMessage:
    return email_lib.message_from_bytes(message, policy=policy.default)


@pytest.mark.parametrize("subject, text", [
    ("Approval needed: CFO Approval", "Hello Alice,\n\nApprove: http://x/approve\n"),  # the plain, fast path
    ("Freigabe nötig: Zahlung 5 000 €", "Grüße,\n\nBitte freigeben.\n"),  # non-ASCII: EmailMessage, as before
    ("Approval needed", "x" * 2000 + "\n"),  # a line too long for 7bit: EmailMessage encodes it
    ("Approval needed " + "y" * 1000, "Hello\n"),  # a header line too long for SMTP: EmailMessage folds it
    ("Approval needed", "Hello,\r\n.a line that starts with a dot\r\nno newline at the end"),
])
def test_what_arrives_is_what_was_sent(subject: str, text: str) -> None:
    message = parsed(compose("flowline@localhost", Email(to=("cfo@acme.test", "cto@acme.test"), subject=subject,
                                                         text=text, idempotency_key="wfi_1:2:1:alice")))
    assert message["Subject"] == subject
    assert message["To"] == "cfo@acme.test, cto@acme.test"
    assert message["From"] == "flowline@localhost"
    assert message["Message-ID"] == message_id("wfi_1:2:1:alice")
    assert message["X-Flowline-Idempotency-Key"] == "wfi_1:2:1:alice"
    assert message.get_content() == text.replace("\r\n", "\n")


def test_a_header_with_a_line_break_is_refused_not_injected() -> None:
    with pytest.raises(ValueError):
        compose("flowline@localhost", Email(to=("cfo@acme.test",), subject="hi\r\nBcc: evil@example.test",
                                            text="x", idempotency_key="k"))



def test_a_plain_notice_is_7bit_text_with_the_body_as_given() -> None:
    text = "Hello Alice,\n\nApprove: http://x/approve\n"
    raw = compose("flowline@localhost", Email(to=("cfo@acme.test",), subject="Approval needed: CFO Approval",
                                              text=text, idempotency_key="k"))
    head, _, body = raw.partition(b"\n\n")
    assert b"Content-Transfer-Encoding: 7bit" in head.split(b"\n")
    assert body == text.encode()
