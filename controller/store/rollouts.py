"""Where rollouts persist: each rollout's engine document, and which update command belongs to which node and attempt.

Table ``rollouts`` holds :meth:`controller.rollouts.Rollout.to_dict` as JSON with its phase and times beside it (for
listing without parsing every document); ``rollout_commands`` maps every update command sent to its rollout, node and
attempt, so a node's ``ota`` report finds its rollout and an old attempt's report is told apart from the current one.
A rollout and the commands it is about to send are written in one transaction, before any of them is published.
"""

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

METADATA = sa.MetaData()

rollouts = sa.Table(
    "rollouts",
    METADATA,
    sa.Column("rollout_id", sa.String(64), primary_key=True),
    sa.Column("release_version", sa.String(64), nullable=False),
    sa.Column("phase", sa.String(16), nullable=False, index=True),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("updated_at", sa.Double, nullable=False),
    sa.Column("document", sa.Text, nullable=False),
)

rollout_commands = sa.Table(
    "rollout_commands",
    METADATA,
    sa.Column("command_id", sa.String(64), primary_key=True),
    sa.Column("rollout_id", sa.String(64), nullable=False, index=True),
    sa.Column("node_id", sa.String(64), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("rollback", sa.Boolean, nullable=False),
    sa.Column("sent_at", sa.Double, nullable=False),
)


@dataclass(frozen=True, slots=True)
class StoredRollout:
    """One row of ``rollouts``: the columns the store lists by, and the adapter's JSON document."""

    rollout_id: str
    release_version: str
    phase: str
    created_at: float
    document: dict[str, Any]


@dataclass(frozen=True, slots=True)
class SentCommand:
    """An update (or rollback) command a rollout sent to one node for one attempt."""

    command_id: str
    rollout_id: str
    node_id: str
    attempt: int
    rollback: bool
    sent_at: float


class RolloutStore:
    """Rollout documents and their commands in the database behind ``engine`` (the reservation store's)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine  # its tables come with the store's migrations

    def save(self, row: StoredRollout, now: float, commands: Iterable[SentCommand] = ()) -> None:
        """Write one rollout (insert or replace) and the commands it is about to send, in one transaction."""
        values = {
            "release_version": row.release_version,
            "phase": row.phase,
            "updated_at": now,
            "document": json.dumps(row.document, separators=(",", ":")),
        }
        rows = [_command_row(c) for c in commands]
        with self.engine.begin() as db:
            updated = db.execute(rollouts.update().where(rollouts.c.rollout_id == row.rollout_id).values(**values))
            if updated.rowcount == 0:
                db.execute(rollouts.insert().values(rollout_id=row.rollout_id, created_at=row.created_at, **values))
            if rows:
                db.execute(rollout_commands.insert(), rows)

    def load(self, rollout_id: str) -> dict[str, Any] | None:
        """The stored document of ``rollout_id``, or None."""
        with self.engine.connect() as db:
            text = db.execute(sa.select(rollouts.c.document).where(rollouts.c.rollout_id == rollout_id)).scalar()
        return None if text is None else _document(text)

    def documents(self, phases: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Stored documents, oldest first; only those in ``phases`` when given."""
        query = sa.select(rollouts.c.document).order_by(rollouts.c.created_at, rollouts.c.rollout_id)
        if phases is not None:
            query = query.where(rollouts.c.phase.in_(list(phases)))
        with self.engine.connect() as db:
            return [_document(text) for text in db.execute(query).scalars()]

    def command(self, command_id: str) -> SentCommand | None:
        """The command ``command_id`` if a rollout sent it."""
        with self.engine.connect() as db:
            row = db.execute(rollout_commands.select().where(rollout_commands.c.command_id == command_id)).first()
        return None if row is None else _command(row)

    def commands_of(self, rollout_ids: Iterable[str]) -> list[SentCommand]:
        """Every command the given rollouts sent, oldest first."""
        ids = list(rollout_ids)
        if not ids:
            return []
        query = (
            rollout_commands.select()
            .where(rollout_commands.c.rollout_id.in_(ids))
            .order_by(rollout_commands.c.sent_at, rollout_commands.c.command_id)
        )
        with self.engine.connect() as db:
            return [_command(row) for row in db.execute(query)]


def _document(text: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def _command_row(c: SentCommand) -> dict[str, Any]:
    return {
        "command_id": c.command_id,
        "rollout_id": c.rollout_id,
        "node_id": c.node_id,
        "attempt": c.attempt,
        "rollback": c.rollback,
        "sent_at": c.sent_at,
    }


def _command(row: sa.Row[Any]) -> SentCommand:
    return SentCommand(row.command_id, row.rollout_id, row.node_id, row.attempt, bool(row.rollback), row.sent_at)
