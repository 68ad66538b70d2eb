"""Template secrets, encrypted at rest with AES-GCM (`cryptography`).

The key comes from `FLOWLINE_SECRETS_KEY` (32 bytes, base64); the template id and secret name are bound
in as associated data, so a ciphertext copied to another template or name does not decrypt. Values are
decrypted only in the memory of the handler that injects them; nothing here logs a value.
"""

from __future__ import annotations

import base64
import os
import secrets as _random
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from core.signing import refuse_development_keys

DEV_KEY = base64.b64encode(b"flowline-development-key-32bytes").decode()  # dev stack only; README says so


class SecretError(ValueError):
    pass


class SecretBox:
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise SecretError("FLOWLINE_SECRETS_KEY must be 32 bytes, base64-encoded")
        self._aead = AESGCM(key)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SecretBox:
        e = os.environ if env is None else env
        raw = e.get("FLOWLINE_SECRETS_KEY", DEV_KEY)
        refuse_development_keys(e.get("FLOWLINE_PROFILE", "dev"), {"FLOWLINE_SECRETS_KEY": raw == DEV_KEY})
        try:
            return cls(base64.b64decode(raw, validate=True))
        except ValueError as exc:
            raise SecretError(f"FLOWLINE_SECRETS_KEY is not valid base64: {exc}") from None

    def encrypt(self, template_id: str, name: str, value: str) -> str:
        nonce = _random.token_bytes(12)
        sealed = self._aead.encrypt(nonce, value.encode(), f"{template_id}\x00{name}".encode())
        return "v1:" + base64.b64encode(nonce + sealed).decode()

    def decrypt(self, template_id: str, name: str, token: str) -> str:
        if not token.startswith("v1:"):
            raise SecretError(f"secret {name!r} has an unknown format")
        blob = base64.b64decode(token[3:])
        try:
            return self._aead.decrypt(blob[:12], blob[12:], f"{template_id}\x00{name}".encode()).decode()
        except InvalidTag:
            raise SecretError(f"secret {name!r} does not decrypt with this key") from None


async def load_secrets(conn, box: SecretBox, template_id: str) -> dict[str, str]:
    """All secrets of a template, decrypted (asyncpg connection or pool)."""
    rows = await conn.fetch(
        "SELECT secret_name, encrypted_value FROM workflow_template_secrets WHERE template_id = $1", template_id)
    return {row["secret_name"]: box.decrypt(template_id, row["secret_name"], row["encrypted_value"]) for row in rows}


async def store_secret(conn, box: SecretBox, template_id: str, name: str, value: str) -> None:
    await conn.execute(
        """INSERT INTO workflow_template_secrets (template_id, secret_name, encrypted_value)
           VALUES ($1, $2, $3)
           ON CONFLICT (template_id, secret_name)
           DO UPDATE SET encrypted_value = EXCLUDED.encrypted_value, updated_at = now()""",
        template_id, name, box.encrypt(template_id, name, value))
