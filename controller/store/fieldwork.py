"""What the field technicians' swap queue keeps in the controller's store: technicians, their keys, work orders.

Shares the reservation store's database through its engine; that store's migrations create the tables. A work order
is one row (the :class:`~controller.swapqueue.WorkOrder` as JSON, with the columns the API filters on) rewritten on
every change, and every change is also one ``work_order_events`` row (its history). Technician keys follow the
operator keys' scheme (:mod:`controller.store.tokens`): ``lftech_<key id>_<secret>``, only the secret's SHA-256 kept.
"""

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from controller.store import tokens as api_tokens
from controller.store.reservations import ReservationStore
from controller.swapqueue import (
    CancelReason,
    Event,
    Evidence,
    GeoPoint,
    OrderState,
    ProblemKind,
    Severity,
    Technician,
    WorkOrder,
)

METADATA = sa.MetaData()

TOKEN_PREFIX = "lftech"  # noqa: S105 - a prefix, not a secret
"""Technician tokens read ``lftech_<key id>_<secret>``."""

technicians = sa.Table(
    "technicians",
    METADATA,
    sa.Column("technician_id", sa.String(64), primary_key=True),
    sa.Column("start_lat", sa.Double, nullable=False),
    sa.Column("start_lon", sa.Double, nullable=False),
    sa.Column("max_stops", sa.Integer, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

technician_keys = sa.Table(
    "technician_keys",
    METADATA,
    sa.Column("key_id", sa.String(32), primary_key=True),
    sa.Column("technician_id", sa.String(64), nullable=False, index=True),
    sa.Column("secret_sha256", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("revoked", sa.Boolean, nullable=False, default=False),
)

work_orders = sa.Table(
    "work_orders",
    METADATA,
    sa.Column("order_id", sa.String(250), primary_key=True),
    sa.Column("node_id", sa.String(64), nullable=False, index=True),
    sa.Column("state", sa.String(32), nullable=False, index=True),
    sa.Column("technician_id", sa.String(64), index=True),
    sa.Column("updated_at", sa.Double, nullable=False),
    sa.Column("summary", sa.Text, nullable=False),
    sa.Column("data", sa.Text, nullable=False),
)

work_order_events = sa.Table(
    "work_order_events",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("order_id", sa.String(250), nullable=False, index=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("at", sa.Double, nullable=False),
    sa.Column("state", sa.String(32), nullable=False),
    sa.Column("technician_id", sa.String(64)),
)


@dataclass(frozen=True, slots=True)
class TechnicianKey:
    """A technician's key (the secret itself is never stored)."""

    key_id: str
    technician_id: str


@dataclass(frozen=True, slots=True)
class StoredOrder:
    """A work order and the alert summary shown to the technician (what the problem is)."""

    order: WorkOrder
    summary: str


@dataclass(frozen=True, slots=True)
class OrderEvent:
    """One stored change of a work order."""

    kind: str
    at: float
    state: str
    technician_id: str | None


class FieldStore:
    """Technicians, technician keys and work orders in the database behind ``engine``."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine  # its tables come with the store's migrations

    # -- technicians and keys -------------------------------------------------------------------------------------

    def create_key(self, technician: Technician, now: datetime) -> str:
        """Register (or update) ``technician`` and issue a new key; the token is shown once, only its hash is kept."""
        new = api_tokens.issue(TOKEN_PREFIX)
        row = {
            "start_lat": technician.start.lat,
            "start_lon": technician.start.lon,
            "max_stops": technician.max_stops,
        }
        with self.engine.begin() as db:
            found = db.execute(
                technicians.update().where(technicians.c.technician_id == technician.technician_id).values(**row)
            )
            if found.rowcount == 0:
                db.execute(technicians.insert().values(technician_id=technician.technician_id, created_at=now, **row))
            db.execute(
                technician_keys.insert().values(
                    key_id=new.key_id,
                    technician_id=technician.technician_id,
                    secret_sha256=new.secret_sha256,
                    created_at=now,
                    revoked=False,
                )
            )
        return new.token

    def authenticate(self, token: str) -> TechnicianKey | None:
        """The key a token belongs to, or None (not a technician token, unknown, revoked, or wrong secret)."""
        row = api_tokens.find(self.engine, technician_keys, TOKEN_PREFIX, token)
        return None if row is None else TechnicianKey(row.key_id, row.technician_id)

    def revoke_key(self, key_id: str) -> bool:
        """Revoke a technician key by its id; False when there is no such key."""
        return api_tokens.revoke(self.engine, technician_keys, key_id)

    def technicians(self) -> list[Technician]:
        """Technicians holding at least one usable key (the ones working), by id."""
        usable = sa.select(technician_keys.c.technician_id).where(technician_keys.c.revoked.is_(False))
        query = technicians.select().where(technicians.c.technician_id.in_(usable))
        query = query.order_by(technicians.c.technician_id)
        with self.engine.connect() as db:
            return [
                Technician(r.technician_id, GeoPoint(r.start_lat, r.start_lon), r.max_stops) for r in db.execute(query)
            ]

    # -- work orders ----------------------------------------------------------------------------------------------

    def save(self, events: Iterable[Event], summaries: Mapping[str, str]) -> None:
        """Store what ``events`` changed (each order as it is after its last event) and every event, in one go."""
        events = list(events)
        if not events:
            return
        last = {e.order.order_id: e.order for e in events}
        with self.engine.begin() as db:
            db.execute(work_orders.delete().where(work_orders.c.order_id.in_(list(last))))
            db.execute(
                work_orders.insert(),
                [
                    {
                        "order_id": o.order_id,
                        "node_id": o.node_id,
                        "state": o.state.value,
                        "technician_id": o.technician_id,
                        "updated_at": o.updated_at,
                        "summary": summaries.get(o.order_id, ""),
                        "data": json.dumps(order_to_dict(o), separators=(",", ":")),
                    }
                    for o in last.values()
                ],
            )
            db.execute(
                work_order_events.insert(),
                [
                    {
                        "order_id": e.order.order_id,
                        "kind": e.kind.value,
                        "at": e.at,
                        "state": e.order.state.value,
                        "technician_id": e.order.technician_id,
                    }
                    for e in events
                ],
            )

    def orders(self) -> list[StoredOrder]:
        """Every work order stored, open and closed, oldest change first."""
        query = sa.select(work_orders.c.summary, work_orders.c.data).order_by(work_orders.c.updated_at)
        with self.engine.connect() as db:
            return [StoredOrder(order_from_dict(json.loads(r.data)), r.summary) for r in db.execute(query)]

    def history(self, order_id: str) -> list[OrderEvent]:
        """The stored changes of one order, in order."""
        query = (
            sa.select(work_order_events)
            .where(work_order_events.c.order_id == order_id)
            .order_by(work_order_events.c.id)
        )
        with self.engine.connect() as db:
            return [OrderEvent(r.kind, r.at, r.state, r.technician_id) for r in db.execute(query)]


def order_to_dict(order: WorkOrder) -> dict[str, Any]:
    """JSON-ready form of a work order."""
    data = asdict(order)
    data["alert_ids"] = list(order.alert_ids)
    data["active_alert_ids"] = sorted(order.active_alert_ids)
    return data


_ENUMS: dict[str, type[Any]] = {
    "kind": ProblemKind,
    "state": OrderState,
    "severity": Severity,
    "evidence": Evidence,
    "cancel_reason": CancelReason,
}


def order_from_dict(data: dict[str, Any]) -> WorkOrder:
    """Inverse of :func:`order_to_dict`."""
    values = {f.name: data[f.name] for f in fields(WorkOrder) if f.name in data}
    for name, enum in _ENUMS.items():
        if values.get(name) is not None:
            values[name] = enum(values[name])
    values["alert_ids"] = tuple(values["alert_ids"])
    values["active_alert_ids"] = frozenset(values["active_alert_ids"])
    return WorkOrder(**values)


def issue_technician_key(store_url: str, technician: Technician) -> str:
    """Issue a key for ``technician`` in the controller store at ``store_url``."""
    store = ReservationStore(store_url)
    try:
        return FieldStore(store.engine).create_key(technician, datetime.now(UTC))
    finally:
        store.close()
