"""Agents sign their decisions with Ed25519 (story 29.12's `agent_signature`), so the audit trail can prove
which agent key approved what, and a stolen bearer token alone cannot forge a signed approval.

The signed message is the RFC 8785 (JSON Canonicalization Scheme) form of
`{"instance_id", "step", "attempt", "decision", "reasoning", "timestamp"}`: sorted keys, no whitespace, UTF-8,
so any language's JCS library produces the same bytes. `decision` is "approve" or "reject" (the endpoint's
verb), `attempt` the step attempt the decision is for (an agent cannot replay a signature onto a later
attempt), `timestamp` unix seconds, accepted within a replay window of the verifier's clock.

Pure: the gateway passes in the key, the clock and the request; this module only computes.
"""

from __future__ import annotations

import base64
import binascii

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from core.signing import DEFAULT_REPLAY_WINDOW_SECONDS

VERIFIED = "verified"
ABSENT = "absent"


def canonical_decision(*, instance_id: str, step: int, attempt: int, decision: str, reasoning: str,
                       timestamp: int) -> bytes:
    """The exact bytes an agent signs for one decision."""
    return rfc8785.dumps({"instance_id": instance_id, "step": step, "attempt": attempt, "decision": decision,
                          "reasoning": reasoning, "timestamp": timestamp})


def canonical_transition(*, instance_id: str, from_state: str, to_state: str, reason: str,
                         timestamp: int) -> bytes:
    """The exact bytes an agent signs for one requested state-machine transition: the RFC 8785 form of
    `{"instance_id", "from_state", "to_state", "reason", "timestamp"}`. `from_state` is the state the agent saw
    the instance in (GET .../transitions), so a signature cannot be replayed onto another visit's transition
    out of a different state; within one state the replay window bounds it."""
    return rfc8785.dumps({"instance_id": instance_id, "from_state": from_state, "to_state": to_state,
                          "reason": reason, "timestamp": timestamp})


def parse_public_key(text: str) -> Ed25519PublicKey:
    """An Ed25519 public key from base64 of its 32 raw bytes or from PEM; ValueError if it is neither."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        key = load_pem_public_key(text.encode())
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("the PEM key is not an Ed25519 public key")
        return key
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("public_key must be base64 of 32 raw Ed25519 bytes, or PEM") from None
    if len(raw) != 32:
        raise ValueError(f"an Ed25519 public key has 32 bytes, not {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


def raw_public_key(key: Ed25519PublicKey) -> str:
    """How a key is stored and shown: base64 of its 32 raw bytes."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return base64.b64encode(key.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def signature_refusal(*, public_key: str | None, signature: str, message: bytes, timestamp: int | None,
                      now: int, window: int = DEFAULT_REPLAY_WINDOW_SECONDS) -> str | None:
    """None if `signature` (base64) is the registered key's signature of `message`, within the replay
    window around `now` (unix seconds); otherwise why it is invalid. Call it only when a signature is given."""
    if not public_key:
        return "the agent has no registered public key to check agent_signature against"
    if timestamp is None:
        return "signed_at (unix seconds) is required with agent_signature"
    if abs(now - timestamp) > window:
        return f"signed_at is outside the {window} s replay window"
    try:
        raw = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        return "agent_signature must be base64"
    try:
        parse_public_key(public_key).verify(raw, message)
    except InvalidSignature:
        return "agent_signature does not match the decision (see docs/agents.md for the signed form)"
    except ValueError as exc:
        return str(exc)
    return None
