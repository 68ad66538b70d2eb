"""HMAC signatures Flowline puts on what it sends and checks on what it receives.

- Webhooks: `X-Flowline-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`, so a receiver
  can reject replays outside its window and any change to the body.
- Async external callbacks: each step attempt gets its own callback token, an HMAC of
  `instance_id:step:attempt` under the server's callback key, so the gateway verifies a callback without
  storing tokens; the caller signs `<t>.<body>` with that token, within a replay window.

Pure functions (hmac and hashlib only); keys are passed in by the adapters that read them from the
environment.
"""

from __future__ import annotations

import hashlib
import hmac

DEFAULT_REPLAY_WINDOW_SECONDS = 300


def _mac(key: bytes, message: bytes) -> str:
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def sign_payload(key: bytes, body: bytes, timestamp: int) -> str:
    """The signature header value for `body` sent at `timestamp` (unix seconds)."""
    return f"t={timestamp},v1={_mac(key, str(timestamp).encode() + b'.' + body)}"


def parse_signature(header: str) -> tuple[int, str] | None:
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        return int(parts["t"]), parts["v1"]
    except (KeyError, ValueError):
        return None


def verify_payload(key: bytes, body: bytes, header: str, now: int,
                   window: int = DEFAULT_REPLAY_WINDOW_SECONDS) -> str | None:
    """None if `header` is a valid signature of `body` within the replay window, else why not."""
    parsed = parse_signature(header or "")
    if parsed is None:
        return "signature header must look like t=<unix seconds>,v1=<hex>"
    timestamp, given = parsed
    if abs(now - timestamp) > window:
        return f"signature timestamp is outside the {window} s replay window"
    if not hmac.compare_digest(given, _mac(key, str(timestamp).encode() + b"." + body)):
        return "signature does not match the body"
    return None


def callback_token(callback_key: bytes, instance_id: str, step: int, attempt: int) -> str:
    """The secret an external system uses to sign its completion callback for one step attempt."""
    return _mac(callback_key, f"callback:{instance_id}:{step}:{attempt}".encode())


DEVELOPMENT_PROFILES = frozenset({"dev", "test"})


def refuse_development_keys(profile: str, keys: dict[str, bool]) -> None:
    """Raise if a key still has its development default outside the dev and test profiles.

    `keys` maps each key's environment variable to whether it is the built-in development value. The
    development keys are in the public source: a production process that kept one would sign callbacks,
    webhooks or secrets with a key anyone can read. Every process calls this once, at start-up, with its keys.
    """
    if (profile or "dev") in DEVELOPMENT_PROFILES:
        return
    defaults = sorted(name for name, is_default in keys.items() if is_default)
    if defaults:
        raise ValueError(f"FLOWLINE_PROFILE is {profile!r} but {', '.join(defaults)} still "
                         f"{'has its' if len(defaults) == 1 else 'have their'} development default; set "
                         f"{'it' if len(defaults) == 1 else 'them'} (or use the dev or test profile)")
