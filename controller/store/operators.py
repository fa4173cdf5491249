"""What operators own in the controller's store: their API keys and which nodes are under maintenance.

It shares the reservation store's database (SQLite by default, PostgreSQL by URL) through its engine, and that
store's migrations create its tables. They are separate from the courier partners' tables, so an operator key can
never reserve and a partner key can never drive a node directly.
"""

from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from controller.store import tokens as api_tokens
from controller.store.reservations import ReservationStore, from_db_time

METADATA = sa.MetaData()

TOKEN_PREFIX = "lfop"  # noqa: S105 - a prefix, not a secret
"""Operator tokens read ``lfop_<key id>_<secret>`` (courier partner keys start ``lf_``)."""

operator_keys = sa.Table(
    "operator_keys",
    METADATA,
    sa.Column("key_id", sa.String(32), primary_key=True),
    sa.Column("operator", sa.String(64), nullable=False),
    sa.Column("secret_sha256", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("revoked", sa.Boolean, nullable=False, default=False),
)

node_maintenance = sa.Table(
    "node_maintenance",
    METADATA,
    sa.Column("node_id", sa.String(64), primary_key=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("since", sa.DateTime(timezone=True), nullable=False),
    sa.Column("set_by", sa.String(64), nullable=False),
)


@dataclass(frozen=True)
class OperatorKey:
    """An operator's key (the secret itself is never stored)."""

    key_id: str
    operator: str


@dataclass(frozen=True)
class Maintenance:
    """A node taken out of the reservation pool by an operator."""

    reason: str
    since: datetime
    set_by: str


class OperatorStore:
    """Operator keys and maintenance flags in the database behind ``engine``."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine  # its tables come with the store's migrations

    def create_key(self, operator: str, now: datetime) -> str:
        """A new key for ``operator``; the returned token is shown once, only its hash is kept."""
        new = api_tokens.issue(TOKEN_PREFIX)
        with self.engine.begin() as db:
            db.execute(
                operator_keys.insert().values(
                    key_id=new.key_id,
                    operator=operator,
                    secret_sha256=new.secret_sha256,
                    created_at=now,
                    revoked=False,
                )
            )
        return new.token

    def has_keys(self) -> bool:
        """Whether any operator key is usable (issued and not revoked)."""
        query = sa.select(sa.func.count()).select_from(operator_keys).where(operator_keys.c.revoked.is_(False))
        with self.engine.connect() as db:
            return bool(db.execute(query).scalar())

    def revoke_key(self, key_id: str) -> bool:
        """Revoke a key by its id; False when there is no such key."""
        return api_tokens.revoke(self.engine, operator_keys, key_id)

    def authenticate(self, token: str) -> OperatorKey | None:
        """The key a token belongs to, or None (not an operator token, unknown, revoked, or wrong secret)."""
        row = api_tokens.find(self.engine, operator_keys, TOKEN_PREFIX, token)
        if row is None:
            return None
        return OperatorKey(row.key_id, row.operator)

    def maintenance(self) -> dict[str, Maintenance]:
        """Every node under maintenance."""
        with self.engine.connect() as db:
            rows = db.execute(node_maintenance.select())
            return {r.node_id: Maintenance(r.reason, from_db_time(r.since) or r.since, r.set_by) for r in rows}

    def set_maintenance(self, node_id: str, maintenance: Maintenance) -> None:
        """Put ``node_id`` under maintenance (replacing an earlier reason)."""
        with self.engine.begin() as db:
            db.execute(node_maintenance.delete().where(node_maintenance.c.node_id == node_id))
            db.execute(
                node_maintenance.insert().values(
                    node_id=node_id,
                    reason=maintenance.reason,
                    since=maintenance.since.astimezone(UTC),
                    set_by=maintenance.set_by,
                )
            )

    def clear_maintenance(self, node_id: str) -> bool:
        """Return ``node_id`` to service; False when it was not under maintenance."""
        with self.engine.begin() as db:
            done = db.execute(node_maintenance.delete().where(node_maintenance.c.node_id == node_id))
        return done.rowcount > 0


def issue_operator_key(store_url: str, operator: str) -> str:
    """Issue a key for ``operator`` in the controller store at ``store_url`` (creating the store if need be)."""
    store = ReservationStore(store_url)
    try:
        return OperatorStore(store.engine).create_key(operator, datetime.now(UTC))
    finally:
        store.close()
