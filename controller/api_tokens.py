"""The API token scheme shared by courier partner keys and operator keys: ``<prefix>_<key id>_<secret>``.

Only a SHA-256 of the secret is stored; the key id finds the row, the secret proves possession.
"""

import hashlib
import hmac
import secrets
from typing import NamedTuple


class NewToken(NamedTuple):
    """A freshly issued token and what to store for it."""

    token: str
    """Shown to its holder once."""
    key_id: str
    secret_sha256: str


def issue(prefix: str) -> NewToken:
    """A new random token with ``prefix``."""
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    return NewToken(f"{prefix}_{key_id}_{secret}", key_id, _sha256(secret))


def split(token: str, prefix: str) -> tuple[str, str] | None:
    """``(key id, secret)`` of a token with ``prefix``, or None when it is not such a token."""
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != prefix:
        return None
    return parts[1], parts[2]


def matches(secret: str, secret_sha256: str) -> bool:
    """Whether ``secret`` is the one whose hash was stored (constant time)."""
    return hmac.compare_digest(secret_sha256, _sha256(secret))


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
