"""Where alert state persists: the engine's records and silences, and the outbox of announcements to deliver.

Tables ``alert_records`` and ``alert_silences`` hold :meth:`AlertMonitor.dump` row by row (JSON per alert, so a
change rewrites one row); ``alert_deliveries`` holds each announcement once, keyed by its ``delivery_key``, until the
MQTT channel has it (``published_at``). :meth:`AlertStore.commit` writes the changed state, the new announcements
and their operator webhooks (the courier webhooks' queue, table ``webhooks``) in one transaction: after a crash
either all of it is stored or none, so a restart neither forgets an alert nor announces it twice.

Operator webhook endpoints live beside the courier partners' (table ``partners``) under the name
``operator:<name>``; a partner name never holds ``:``, so neither can be mistaken for the other.
"""

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from controller.store.reservations import ReservationStore, partners, webhooks

METADATA = sa.MetaData()

OPERATOR_PREFIX = "operator:"
"""Operator webhook endpoints are ``partners`` rows named ``operator:<name>``."""

alert_records = sa.Table(
    "alert_records",
    METADATA,
    sa.Column("alert_id", sa.String(200), primary_key=True),
    sa.Column("data", sa.Text, nullable=False),
)

alert_silences = sa.Table(
    "alert_silences",
    METADATA,
    sa.Column("silence_id", sa.String(64), primary_key=True),
    sa.Column("data", sa.Text, nullable=False),
)

alert_deliveries = sa.Table(
    "alert_deliveries",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("delivery_key", sa.String(200), nullable=False, unique=True),
    sa.Column("alert_id", sa.String(200), nullable=False, index=True),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("published_at", sa.Double),
)

_IN_CHUNK = 500


@dataclass(frozen=True, slots=True)
class Notice:
    """One announcement to store and deliver: its key, its alert and its message (``schemas.alert.AlertNotice``)."""

    delivery_key: str
    alert_id: str
    body: dict[str, Any]


@dataclass(slots=True)
class StateChanges:
    """Rows of the engine's state to write (by id, JSON-ready) and ids to delete."""

    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    dropped_records: list[str] = field(default_factory=list)
    silences: dict[str, dict[str, Any]] = field(default_factory=dict)
    dropped_silences: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """An announcement waiting for the MQTT channel."""

    id: int
    delivery_key: str
    body: dict[str, Any]


class AlertStore:
    """Alert state, the announcement outbox and operator webhook endpoints, in the reservation store's database."""

    def __init__(self, store: ReservationStore) -> None:
        self._store = store
        self.engine = store.engine  # its tables come with the store's migrations

    # -- state ----------------------------------------------------------------------------------------------------

    def load(self, version: int) -> dict[str, Any]:
        """The stored state in :meth:`AlertEngine.dump` form (``version`` is the engine's format)."""
        with self.engine.connect() as db:
            records = [json.loads(r.data) for r in db.execute(sa.select(alert_records.c.data))]
            silences = [json.loads(r.data) for r in db.execute(sa.select(alert_silences.c.data))]
        return {"version": version, "records": records, "silences": silences}

    def commit(self, changes: StateChanges, notices: Sequence[Notice], now: float) -> list[Notice]:
        """Write state changes and announcements in one transaction; returns the announcements new to the store.

        An announcement whose key is stored already was delivered (or is queued): it is skipped, not repeated.
        Each new one is queued for the MQTT channel and for every operator webhook endpoint.
        """
        with self.engine.begin() as db:
            _replace(db, alert_records, alert_records.c.alert_id, changes.records, changes.dropped_records)
            _replace(db, alert_silences, alert_silences.c.silence_id, changes.silences, changes.dropped_silences)
            for chunk in _chunks(changes.dropped_records):  # a pruned alert's next episode starts again at 1
                db.execute(alert_deliveries.delete().where(alert_deliveries.c.alert_id.in_(chunk)))
            fresh = _unseen(db, notices)
            if fresh:
                db.execute(
                    alert_deliveries.insert(),
                    [
                        {"delivery_key": n.delivery_key, "alert_id": n.alert_id, "created_at": now, "body": _json(n)}
                        for n in fresh
                    ],
                )
                _queue_webhooks(db, fresh, now)
        return fresh

    def delivered_keys(self) -> set[str]:
        """Every announcement key stored (delivered or queued)."""
        with self.engine.connect() as db:
            return {r.delivery_key for r in db.execute(sa.select(alert_deliveries.c.delivery_key))}

    # -- MQTT outbox ----------------------------------------------------------------------------------------------

    def unpublished(self, limit: int = 200) -> list[Outgoing]:
        """Announcements not yet on the MQTT channel, oldest first."""
        query = (
            sa.select(alert_deliveries.c.id, alert_deliveries.c.delivery_key, alert_deliveries.c.body)
            .where(alert_deliveries.c.published_at.is_(None))
            .order_by(alert_deliveries.c.id)
            .limit(limit)
        )
        with self.engine.connect() as db:
            return [Outgoing(r.id, r.delivery_key, json.loads(r.body)) for r in db.execute(query)]

    def published(self, ids: Iterable[int], now: float) -> None:
        """Mark announcements as on the MQTT channel."""
        with self.engine.begin() as db:
            for chunk in _chunks(list(ids)):
                db.execute(alert_deliveries.update().where(alert_deliveries.c.id.in_(chunk)).values(published_at=now))

    # -- operator webhook endpoints -------------------------------------------------------------------------------

    def set_operator_webhook(self, name: str, url: str) -> str:
        """Register (or replace) the operator endpoint ``name``; returns its new signing secret (shown once)."""
        return self._store.set_webhook(OPERATOR_PREFIX + name, url)

    def remove_operator_webhook(self, name: str) -> bool:
        """Stop sending to the operator endpoint ``name``; False if there was none."""
        with self.engine.begin() as db:
            done = db.execute(partners.delete().where(partners.c.partner == OPERATOR_PREFIX + name))
        return done.rowcount > 0

    def operator_webhooks(self) -> dict[str, str]:
        """URL of every operator endpoint by name."""
        with self.engine.connect() as db:
            rows = db.execute(sa.select(partners.c.partner, partners.c.webhook_url).where(_is_operator()))
            return {r.partner.removeprefix(OPERATOR_PREFIX): r.webhook_url for r in rows}


def event_id(endpoint: str, delivery_key: str) -> str:
    """The webhook event id of one announcement to one endpoint (stable: a retry or a repeat has the same id)."""
    return "alert_" + hashlib.sha256(f"{endpoint}|{delivery_key}".encode()).hexdigest()[:48]


def _is_operator() -> sa.ColumnElement[bool]:
    return partners.c.partner.startswith(OPERATOR_PREFIX, autoescape=True)


def _json(notice: Notice) -> str:
    return json.dumps(notice.body, separators=(",", ":"))


def _chunks(ids: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(ids), _IN_CHUNK):
        yield ids[start : start + _IN_CHUNK]


def _replace(
    db: sa.Connection, table: sa.Table, key: sa.Column[Any], rows: dict[str, dict[str, Any]], dropped: list[str]
) -> None:
    gone = [*rows, *dropped]
    for chunk in _chunks(gone):
        db.execute(table.delete().where(key.in_(chunk)))
    if rows:
        db.execute(
            table.insert(), [{key.name: k, "data": json.dumps(v, separators=(",", ":"))} for k, v in rows.items()]
        )


def _unseen(db: sa.Connection, notices: Sequence[Notice]) -> list[Notice]:
    keys = list({n.delivery_key for n in notices})
    stored: set[str] = set()
    for chunk in _chunks(keys):
        query = sa.select(alert_deliveries.c.delivery_key).where(alert_deliveries.c.delivery_key.in_(chunk))
        stored.update(r.delivery_key for r in db.execute(query))
    fresh: list[Notice] = []
    for notice in notices:
        if notice.delivery_key not in stored:
            stored.add(notice.delivery_key)
            fresh.append(notice)
    return fresh


def _queue_webhooks(db: sa.Connection, notices: Sequence[Notice], now: float) -> None:
    endpoints = [r.partner for r in db.execute(sa.select(partners.c.partner).where(_is_operator()))]
    if not endpoints:
        return
    rows = [
        {
            "partner": endpoint,
            "event_id": event_id(endpoint, n.delivery_key),
            "body": _json(n),
            "attempts": 0,
            "next_at": datetime.fromtimestamp(now, UTC),
        }
        for n in notices
        for endpoint in endpoints
    ]
    db.execute(webhooks.insert(), rows)
