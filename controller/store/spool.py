"""Points waiting for InfluxDB: table ``influx_spool`` in the controller's database (SQLite or PostgreSQL).

Control messages (statuses, command results, events) are acknowledged to the broker once their lines are here,
not once InfluxDB stored them, so an InfluxDB outage never holds the control session's receive window. A drain
thread writes the rows to InfluxDB and deletes them. Controllers on one database may drain each other's rows: a
row written to InfluxDB twice is the same point (same tags and device timestamp) and overwrites itself.
"""

from collections.abc import Sequence
from typing import NamedTuple

import sqlalchemy as sa

METADATA = sa.MetaData()

influx_spool = sa.Table(
    "influx_spool",
    METADATA,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("queued_at", sa.Double, nullable=False),
    sa.Column("line", sa.Text, nullable=False),
)


class Spooled(NamedTuple):
    """One waiting line."""

    id: int
    queued_at: float
    line: str


class SpoolStore:
    """The ``influx_spool`` table behind ``engine`` (the reservation store's); safe to call from several threads."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def add(self, lines: Sequence[str], now: float) -> None:
        """Store ``lines`` in one transaction (raises the database's error: then nothing was stored)."""
        if lines:
            with self.engine.begin() as db:
                db.execute(influx_spool.insert(), [{"queued_at": now, "line": line} for line in lines])

    def take(self, limit: int) -> tuple[list[Spooled], int]:
        """The oldest ``limit`` lines (they stay until :meth:`delete`), and how many wait in all."""
        with self.engine.connect() as db:
            rows = db.execute(influx_spool.select().order_by(influx_spool.c.id).limit(limit)).all()
            waiting = (
                len(rows)
                if len(rows) < limit
                else db.execute(sa.select(sa.func.count()).select_from(influx_spool)).scalar_one()
            )
        return [Spooled(r.id, r.queued_at, r.line) for r in rows], waiting

    def delete(self, ids: Sequence[int]) -> None:
        """Forget lines that InfluxDB stored."""
        with self.engine.begin() as db:
            for start in range(0, len(ids), _IN_CHUNK):
                db.execute(influx_spool.delete().where(influx_spool.c.id.in_(ids[start : start + _IN_CHUNK])))


_IN_CHUNK = 1000
"""Ids per ``IN (...)`` when deleting."""
