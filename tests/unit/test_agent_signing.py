"""The canonical form agents sign (docs/agents.md) and its verification: pure, no stack."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from core.agent_signing import canonical_decision, parse_public_key, raw_public_key, signature_refusal
from core.approvers import parse_window

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
PUBLIC = base64.b64encode(KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()
NOW = 1_764_474_000


def message(reasoning: str = "Invoice matches the PO", **changes) -> bytes:
    fields = {"instance_id": "wfi_1", "step": 3, "attempt": 1, "decision": "approve", "reasoning": reasoning,
              "timestamp": NOW} | changes
    return canonical_decision(**fields)


def sign(msg: bytes) -> str:
    return base64.b64encode(KEY.sign(msg)).decode()


def test_the_canonical_form_is_sorted_compact_utf8_json():
    assert message("Prüfung ok") == ('{"attempt":1,"decision":"approve","instance_id":"wfi_1",'
                                     '"reasoning":"Prüfung ok","step":3,"timestamp":1764474000}').encode()


def test_a_good_signature_passes_and_every_change_fails():
    good = sign(message())
    assert signature_refusal(public_key=PUBLIC, signature=good, message=message(), timestamp=NOW, now=NOW) is None
    for changed in (message("other"), message(attempt=2), message(decision="reject"), message(step=2)):
        assert "does not match" in signature_refusal(public_key=PUBLIC, signature=good, message=changed,
                                                     timestamp=NOW, now=NOW)


def test_replay_window_missing_key_and_bad_encodings():
    good = sign(message())
    assert "replay window" in signature_refusal(public_key=PUBLIC, signature=good, message=message(),
                                                timestamp=NOW, now=NOW + 301)
    assert "no registered public key" in signature_refusal(public_key=None, signature=good, message=message(),
                                                           timestamp=NOW, now=NOW)
    assert "signed_at" in signature_refusal(public_key=PUBLIC, signature=good, message=message(), timestamp=None,
                                            now=NOW)
    assert "base64" in signature_refusal(public_key=PUBLIC, signature="not base64!", message=message(),
                                         timestamp=NOW, now=NOW)


def test_keys_parse_from_raw_base64_or_pem_and_nothing_else():
    pem = KEY.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
    assert raw_public_key(parse_public_key(pem)) == raw_public_key(parse_public_key(PUBLIC)) == PUBLIC
    for bad in ("", "abc", base64.b64encode(b"short").decode()):
        with pytest.raises(ValueError):
            parse_public_key(bad)


@pytest.mark.parametrize("window, expected", [("09:00-17:00", (540, 1020)), ("22:00-06:00", (1320, 360)),
                                              ("00:00-24:00", (0, 1440))])
def test_hours_windows_parse(window, expected):
    assert parse_window(window) == expected


@pytest.mark.parametrize("window", ["9-17", "09:00-09:00", "25:00-26:00", "09:60-10:00", "x"])
def test_bad_hours_windows_are_refused(window):
    with pytest.raises(ValueError):
        parse_window(window)
