"""The email the SMTP sender hands over: cheap for plain ASCII, the same as before for anything else."""

from __future__ import annotations

import email as email_lib
from email import policy

import pytest

from handlers.notification import Email, compose, message_id


def parsed(message) -> email_lib.message.EmailMessage:
    return email_lib.message_from_bytes(message.as_bytes(), policy=policy.default)


@pytest.mark.parametrize("subject, text", [
    ("Approval needed: CFO Approval", "Hello Alice,\n\nApprove: http://x/approve\n"),  # the plain, fast path
    ("Freigabe nötig: Zahlung 5 000 €", "Grüße,\n\nBitte freigeben.\n"),  # non-ASCII: EmailMessage, as before
    ("Approval needed", "x" * 2000 + "\n"),  # a line too long for 7bit: EmailMessage encodes it
])
def test_what_arrives_is_what_was_sent(subject: str, text: str) -> None:
    message = parsed(compose("flowline@localhost", Email(to=("cfo@acme.test", "cto@acme.test"), subject=subject,
                                                         text=text, idempotency_key="wfi_1:2:1:alice")))
    assert message["Subject"] == subject
    assert message["To"] == "cfo@acme.test, cto@acme.test"
    assert message["From"] == "flowline@localhost"
    assert message["Message-ID"] == message_id("wfi_1:2:1:alice")
    assert message["X-Flowline-Idempotency-Key"] == "wfi_1:2:1:alice"
    assert message.get_content() == text


def test_a_header_with_a_line_break_is_refused_not_injected() -> None:
    with pytest.raises(ValueError):
        compose("flowline@localhost", Email(to=("cfo@acme.test",), subject="hi\r\nBcc: evil@example.test",
                                            text="x", idempotency_key="k"))
