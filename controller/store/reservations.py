"""Where reservations, courier API keys, idempotency records and the audit trail persist (SQLAlchemy Core).

One implementation for SQLite (the default, a file) and PostgreSQL (a ``postgresql+psycopg://`` URL). The database
itself refuses a double booking: a unique index over (node, compartment) of the reservations that hold one.

The store holds secrets (the code secret every node's key derives from, webhook signing secrets): an SQLite file is
created 0600 (see :mod:`schemas.private_files`). Codes are never stored: a replayed answer gets them recomputed.
"""

import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from controller.store import migrations
from controller.store import tokens as api_tokens
from schemas.private_files import private_file

METADATA = sa.MetaData()

PARTNER_TOKEN_PREFIX = "lf"  # noqa: S105 - a prefix, not a secret
"""Courier partner tokens read ``lf_<key id>_<secret>``."""


class ReservationState(StrEnum):
    """Lifecycle of a reservation as the controller records it (the node's ledger has the last word)."""

    WAITLISTED = "waitlisted"
    PENDING = "pending"
    HELD = "held"
    DEPOSITED = "deposited"
    PICKED_UP = "picked_up"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    REFUSED = "refused"


ACTIVE_STATES = frozenset({ReservationState.PENDING, ReservationState.HELD, ReservationState.DEPOSITED})
"""States in which a reservation holds its compartment."""
_ACTIVE = sorted(state.value for state in ACTIVE_STATES)
QUOTA_STATES = frozenset({ReservationState.WAITLISTED, ReservationState.PENDING, ReservationState.HELD})
"""States that count against a partner's per-site quota: asked for or held, and still empty."""


reservations = sa.Table(
    "reservations",
    METADATA,
    sa.Column("reservation_id", sa.String(64), primary_key=True),
    sa.Column("partner", sa.String(64), nullable=False),
    sa.Column("site_id", sa.String(64), nullable=False),
    sa.Column("size", sa.String(4), nullable=False),
    sa.Column("parcel_ref", sa.String(128), nullable=False),
    sa.Column("priority", sa.Integer, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("node_id", sa.String(64)),
    sa.Column("compartment", sa.String(16)),
    sa.Column("hold_until", sa.DateTime(timezone=True)),
    sa.Column("pickup_until", sa.DateTime(timezone=True)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("wait_until", sa.DateTime(timezone=True)),
    sa.Column("last_boot", sa.BigInteger),
    sa.Column("last_seq", sa.BigInteger),
)
sa.Index(
    "one_active_reservation_per_compartment",
    reservations.c.node_id,
    reservations.c.compartment,
    unique=True,
    sqlite_where=reservations.c.state.in_(_ACTIVE),
    postgresql_where=reservations.c.state.in_(_ACTIVE),
)
sa.Index("reservations_by_partner_site_state", reservations.c.partner, reservations.c.site_id, reservations.c.state)

api_keys = sa.Table(
    "api_keys",
    METADATA,
    sa.Column("key_id", sa.String(32), primary_key=True),
    sa.Column("partner", sa.String(64), nullable=False),
    sa.Column("secret_sha256", sa.String(64), nullable=False),
    sa.Column("sites", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("revoked", sa.Boolean, nullable=False, default=False),
    sa.Column("priorities", sa.Text, nullable=False, server_default="0"),
    sa.Column("quota_per_site", sa.Integer),
)

idempotency = sa.Table(
    "idempotency",
    METADATA,
    sa.Column("partner", sa.String(64), primary_key=True),
    sa.Column("idempotency_key", sa.String(128), primary_key=True),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("status_code", sa.Integer, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

partners = sa.Table(
    "partners",
    METADATA,
    sa.Column("partner", sa.String(64), primary_key=True),
    sa.Column("webhook_url", sa.Text, nullable=False),
    sa.Column("webhook_secret", sa.String(64), nullable=False),
)

webhooks = sa.Table(
    "webhooks",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("partner", sa.String(64), nullable=False),
    sa.Column("event_id", sa.String(64), nullable=False, unique=True),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("delivered_at", sa.DateTime(timezone=True)),
    sa.Column("last_error", sa.Text),
)

controller_secret = sa.Table(
    "controller_secret",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("secret", sa.LargeBinary, nullable=False),
)

audit = sa.Table(
    "audit",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("reservation_id", sa.String(64), nullable=False, index=True),
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
)


class DoubleBookingError(Exception):
    """The compartment already has an active reservation (the database's unique index refused it)."""


@dataclass(frozen=True)
class Reservation:
    """One reservation row."""

    reservation_id: str
    partner: str
    site_id: str
    size: str
    parcel_ref: str
    priority: int
    state: ReservationState
    node_id: str | None
    compartment: str | None
    hold_until: datetime | None
    pickup_until: datetime | None
    created_at: datetime
    updated_at: datetime
    last_report: tuple[int, int] | None = None
    """(boot id, seq) of the last node report applied (reconciliation ignores older ones)."""
    wait_until: datetime | None = None
    """While waitlisted: when the request gives up."""


@dataclass(frozen=True)
class ApiKey:
    """A courier partner's key (the secret itself is never stored)."""

    key_id: str
    partner: str
    sites: frozenset[str]
    priorities: frozenset[int] = frozenset({0})
    """Request priorities the key may use."""
    quota_per_site: int | None = None
    """Reservations the partner may keep per site with this key; None: the controller's share of the site."""


CODE_FIELDS = ("deposit_code", "pickup_code")
"""Fields of an answer that are never stored: anyone who reads the store could use them at a locker."""


def without_codes(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` without its :data:`CODE_FIELDS` (at its top level and in an embedded ``reservation``)."""
    kept = {name: value for name, value in body.items() if name not in CODE_FIELDS}
    if isinstance(kept.get("reservation"), dict):
        kept["reservation"] = without_codes(kept["reservation"])
    return kept


@dataclass(frozen=True)
class StoredResponse:
    """What was answered to an idempotent request (stored without its codes; see :data:`CODE_FIELDS`)."""

    fingerprint: str
    status_code: int
    body: dict[str, Any]


class ReservationStore:
    """Reservations and what goes with them, in the database at ``url``."""

    def __init__(self, url: str) -> None:
        self.engine = sa.create_engine(url, future=True)
        if self.engine.dialect.name == "sqlite":
            database = self.engine.url.database
            if database and database != ":memory:" and not self.engine.url.query.get("uri"):
                private_file(Path(database))
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        migrations.upgrade(self.engine)

    def close(self) -> None:
        """Release the connection pool."""
        self.engine.dispose()

    # -- reservations ---------------------------------------------------------------------------------------

    def insert(self, reservation: Reservation) -> None:
        """Store a new reservation; :class:`DoubleBookingError` if its compartment is actively booked."""
        try:
            with self.engine.begin() as db:
                db.execute(reservations.insert().values(**row_of(reservation)))
        except IntegrityError as exc:
            raise DoubleBookingError(f"{reservation.node_id}/{reservation.compartment} is already booked") from exc

    def record_grant(
        self, reservation: Reservation, idempotency_key: str, response: StoredResponse, detail: str
    ) -> None:
        """Store a granted reservation, its audit line and its idempotent answer in one transaction (one fsync).

        :class:`DoubleBookingError` if the compartment is actively booked (nothing is stored then).
        """
        now = _utc(reservation.created_at)
        try:
            with self.engine.begin() as db:
                db.execute(reservations.insert().values(**row_of(reservation)))
                db.execute(
                    audit.insert().values(
                        at=now,
                        reservation_id=reservation.reservation_id,
                        actor=reservation.partner,
                        action="created",
                        detail=detail,
                    )
                )
                db.execute(
                    idempotency.insert().values(
                        partner=reservation.partner,
                        idempotency_key=idempotency_key,
                        fingerprint=response.fingerprint,
                        status_code=response.status_code,
                        body=json.dumps(without_codes(response.body)),
                        created_at=now,
                    )
                )
        except IntegrityError as exc:
            raise DoubleBookingError(f"{reservation.node_id}/{reservation.compartment} is already booked") from exc

    def get(self, reservation_id: str) -> Reservation | None:
        """One reservation, or None."""
        with self.engine.connect() as db:
            row = db.execute(reservations.select().where(reservations.c.reservation_id == reservation_id)).first()
        return None if row is None else _reservation(row._mapping)

    def set_state(
        self, reservation_id: str, state: ReservationState, now: datetime, report: tuple[int, int] | None = None
    ) -> Reservation | None:
        """Move a reservation to ``state`` (after the node report ``report``); returns it, or None when unknown."""
        values: dict[str, Any] = {"state": state.value, "updated_at": _utc(now)}
        if report is not None:
            values |= {"last_boot": report[0], "last_seq": report[1]}
        with self.engine.begin() as db:
            db.execute(reservations.update().where(reservations.c.reservation_id == reservation_id).values(**values))
        return self.get(reservation_id)

    def assign(
        self,
        reservation_id: str,
        node_id: str,
        compartment: str,
        hold_until: datetime,
        pickup_until: datetime,
        now: datetime,
    ) -> None:
        """Give a waitlisted reservation its compartment (it becomes pending); :class:`DoubleBookingError` if taken."""
        try:
            with self.engine.begin() as db:
                db.execute(
                    reservations.update()
                    .where(reservations.c.reservation_id == reservation_id)
                    .values(
                        state=ReservationState.PENDING.value,
                        node_id=node_id,
                        compartment=compartment,
                        hold_until=_utc(hold_until),
                        pickup_until=_utc(pickup_until),
                        wait_until=None,
                        updated_at=_utc(now),
                    )
                )
        except IntegrityError as exc:
            raise DoubleBookingError(f"{node_id}/{compartment} is already booked") from exc

    def waitlisted(self) -> list[Reservation]:
        """Reservations waiting for capacity, oldest first."""
        query = reservations.select().where(reservations.c.state == ReservationState.WAITLISTED.value)
        with self.engine.connect() as db:
            return [_reservation(r._mapping) for r in db.execute(query.order_by(reservations.c.created_at))]

    def active(self, site_id: str | None = None) -> list[Reservation]:
        """Reservations that hold a compartment (pending, held, deposited)."""
        query = reservations.select().where(reservations.c.state.in_(_ACTIVE))
        if site_id is not None:
            query = query.where(reservations.c.site_id == site_id)
        with self.engine.connect() as db:
            return [_reservation(r._mapping) for r in db.execute(query.order_by(reservations.c.created_at))]

    def holding(self, partner: str, site_id: str) -> int:
        """How many of ``partner``'s reservations at ``site_id`` are pending, held or waitlisted (its quota's use)."""
        states = [s.value for s in QUOTA_STATES]
        query = sa.select(sa.func.count()).where(
            reservations.c.partner == partner, reservations.c.site_id == site_id, reservations.c.state.in_(states)
        )
        with self.engine.connect() as db:
            return int(db.execute(query).scalar_one())

    # -- courier API keys -----------------------------------------------------------------------------------

    def create_api_key(
        self,
        partner: str,
        sites: set[str],
        now: datetime,
        *,
        priorities: Iterable[int] = (0,),
        quota_per_site: int | None = None,
    ) -> str:
        """A new key for ``partner`` scoped to ``sites``, allowed ``priorities`` and at most ``quota_per_site``
        reservations per site (None: the controller's default); the returned token is shown once, only its hash is
        kept."""
        new = api_tokens.issue(PARTNER_TOKEN_PREFIX)
        with self.engine.begin() as db:
            db.execute(
                api_keys.insert().values(
                    key_id=new.key_id,
                    partner=partner,
                    secret_sha256=new.secret_sha256,
                    sites=",".join(sorted(sites)),
                    created_at=now,
                    revoked=False,
                    priorities=",".join(str(int(p)) for p in sorted(set(priorities))),
                    quota_per_site=quota_per_site,
                )
            )
        return new.token

    def revoke_api_key(self, key_id: str) -> bool:
        """Revoke a partner's key by its id (the part after ``lf_``); False when there is no such key."""
        return api_tokens.revoke(self.engine, api_keys, key_id)

    def authenticate(self, token: str) -> ApiKey | None:
        """The key a token belongs to, or None (unknown, revoked, or wrong secret)."""
        row = api_tokens.find(self.engine, api_keys, PARTNER_TOKEN_PREFIX, token)
        if row is None:
            return None
        return ApiKey(
            row.key_id,
            row.partner,
            frozenset(s for s in row.sites.split(",") if s),
            frozenset(int(p) for p in row.priorities.split(",") if p),
            row.quota_per_site,
        )

    # -- idempotency ----------------------------------------------------------------------------------------

    def remember(self, partner: str, key: str, response: StoredResponse, now: datetime) -> StoredResponse:
        """Keep the first response to ``(partner, key)``; later calls get that first one back."""
        try:
            with self.engine.begin() as db:
                db.execute(
                    idempotency.insert().values(
                        partner=partner,
                        idempotency_key=key,
                        fingerprint=response.fingerprint,
                        status_code=response.status_code,
                        body=json.dumps(without_codes(response.body)),
                        created_at=now,
                    )
                )
        except IntegrityError:
            found = self.recall(partner, key)
            assert found is not None, "an idempotency record vanished"
            return found
        return response

    def recall(self, partner: str, key: str) -> StoredResponse | None:
        """The response stored for ``(partner, key)``, if any."""
        with self.engine.connect() as db:
            row = db.execute(
                idempotency.select().where(idempotency.c.partner == partner, idempotency.c.idempotency_key == key)
            ).first()
        return None if row is None else StoredResponse(row.fingerprint, row.status_code, json.loads(row.body))

    # -- webhooks -------------------------------------------------------------------------------------------

    def set_webhook(self, partner: str, url: str) -> str:
        """Register (or replace) ``partner``'s webhook URL; returns the new signing secret (shown once)."""
        secret = secrets.token_hex(32)
        with self.engine.begin() as db:
            db.execute(partners.delete().where(partners.c.partner == partner))
            db.execute(partners.insert().values(partner=partner, webhook_url=url, webhook_secret=secret))
        return secret

    def webhook_of(self, partner: str) -> tuple[str, str] | None:
        """``(url, signing secret)`` of a partner's webhook, if registered."""
        with self.engine.connect() as db:
            row = db.execute(partners.select().where(partners.c.partner == partner)).first()
        return None if row is None else (row.webhook_url, row.webhook_secret)

    def enqueue_webhook(self, partner: str, event_id: str, body: dict[str, Any], now: datetime) -> None:
        """Queue one event for delivery (durably, so a restart delivers it too); its codes are not stored."""
        with self.engine.begin() as db:
            db.execute(
                webhooks.insert().values(
                    partner=partner,
                    event_id=event_id,
                    body=json.dumps(without_codes(body)),
                    attempts=0,
                    next_at=_utc(now),
                )
            )

    def due_webhooks(self, now: datetime, limit: int = 50) -> list[tuple[int, str, str, str, int]]:
        """``(id, partner, event id, body, attempts)`` of undelivered events whose time has come, oldest first."""
        with self.engine.connect() as db:
            rows = db.execute(
                sa.select(webhooks.c.id, webhooks.c.partner, webhooks.c.event_id, webhooks.c.body, webhooks.c.attempts)
                .where(webhooks.c.delivered_at.is_(None), webhooks.c.next_at <= _utc(now))
                .order_by(webhooks.c.id)
                .limit(limit)
            )
            return [(r.id, r.partner, r.event_id, r.body, r.attempts) for r in rows]

    def webhook_done(self, delivery_id: int, now: datetime) -> None:
        """Mark a delivery as received by the partner."""
        with self.engine.begin() as db:
            db.execute(webhooks.update().where(webhooks.c.id == delivery_id).values(delivered_at=_utc(now)))

    def webhook_failed(self, delivery_id: int, error: str, retry_at: datetime | None) -> None:
        """Count a failed attempt; ``retry_at`` None gives up (the row stays, undelivered, for inspection)."""
        values: dict[str, Any] = {"attempts": webhooks.c.attempts + 1, "last_error": error[:1000]}
        values["next_at"] = _utc(retry_at) if retry_at else datetime(9999, 1, 1, tzinfo=UTC)
        with self.engine.begin() as db:
            db.execute(webhooks.update().where(webhooks.c.id == delivery_id).values(**values))

    def code_secret(self) -> bytes:
        """The controller's secret from which every node's code key is derived; created once, kept here."""
        with self.engine.begin() as db:
            found = db.execute(sa.select(controller_secret.c.secret)).scalar()
            if found is None:
                found = secrets.token_bytes(32)
                db.execute(controller_secret.insert().values(id=1, secret=found))
        return bytes(found)

    # -- audit trail ----------------------------------------------------------------------------------------

    def audit(self, reservation_id: str, actor: str, action: str, detail: str, now: datetime) -> None:
        """Append one line to a reservation's audit trail."""
        with self.engine.begin() as db:
            db.execute(
                audit.insert().values(at=now, reservation_id=reservation_id, actor=actor, action=action, detail=detail)
            )

    def trail(self, reservation_id: str) -> list[tuple[str, str, str]]:
        """(actor, action, detail) of a reservation, oldest first."""
        with self.engine.connect() as db:
            rows = db.execute(
                sa.select(audit.c.actor, audit.c.action, audit.c.detail)
                .where(audit.c.reservation_id == reservation_id)
                .order_by(audit.c.id)
            )
            return [(r.actor, r.action, r.detail) for r in rows]


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _utc(value: datetime | None) -> datetime | None:
    """Times go in as UTC (SQLite keeps no offset)."""
    return None if value is None else value.astimezone(UTC)


def row_of(r: Reservation) -> dict[str, Any]:
    """The table row of ``r``, times in UTC."""
    return {
        "reservation_id": r.reservation_id,
        "partner": r.partner,
        "site_id": r.site_id,
        "size": r.size,
        "parcel_ref": r.parcel_ref,
        "priority": r.priority,
        "state": r.state.value,
        "node_id": r.node_id,
        "compartment": r.compartment,
        "hold_until": _utc(r.hold_until),
        "pickup_until": _utc(r.pickup_until),
        "created_at": _utc(r.created_at),
        "updated_at": _utc(r.updated_at),
        "wait_until": _utc(r.wait_until),
    }


def from_db_time(value: datetime | None) -> datetime | None:
    """Times come back in UTC (SQLite hands back naive ones: they were stored as UTC)."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _reservation(m: Any) -> Reservation:
    return Reservation(
        reservation_id=m["reservation_id"],
        partner=m["partner"],
        site_id=m["site_id"],
        size=m["size"],
        parcel_ref=m["parcel_ref"],
        priority=m["priority"],
        state=ReservationState(m["state"]),
        node_id=m["node_id"],
        compartment=m["compartment"],
        hold_until=from_db_time(m["hold_until"]),
        pickup_until=from_db_time(m["pickup_until"]),
        created_at=from_db_time(m["created_at"]) or m["created_at"],
        updated_at=from_db_time(m["updated_at"]) or m["updated_at"],
        last_report=None if m["last_boot"] is None else (m["last_boot"], m["last_seq"]),
        wait_until=from_db_time(m["wait_until"]),
    )
