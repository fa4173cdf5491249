"""The API token scheme shared by courier partner keys and operator keys: ``<prefix>_<key id>_<secret>``.

Only a SHA-256 of the secret is stored; the key id finds the row, the secret proves possession. Both key tables
have ``key_id``, ``secret_sha256`` and ``revoked`` columns, so finding and revoking a key is the same for both.
"""

import hashlib
import hmac
import secrets
from typing import Any, NamedTuple

import sqlalchemy as sa


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


def find(engine: sa.Engine, table: sa.Table, prefix: str, token: str) -> Any | None:
    """The row of the unrevoked key ``token`` proves possession of, or None (another kind, unknown, wrong secret)."""
    found = split(token, prefix)
    if found is None:
        return None
    key_id, secret = found
    with engine.connect() as db:
        row = db.execute(table.select().where(table.c.key_id == key_id)).first()
    if row is None or row.revoked or not matches(secret, row.secret_sha256):
        return None
    return row


def revoke(engine: sa.Engine, table: sa.Table, key_id: str) -> bool:
    """Revoke the key ``key_id`` in ``table``; False when there is no such key."""
    with engine.begin() as db:
        done = db.execute(table.update().where(table.c.key_id == key_id).values(revoked=True))
    return done.rowcount > 0


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
