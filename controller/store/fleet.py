"""Where the fleet registry persists: table ``fleet_nodes`` in the controller's database (SQLite or PostgreSQL).

Controllers on one database share it: a node born through one is known to another when it starts
(:meth:`FleetStore.load`) and at every fleet snapshot (:meth:`FleetStore.refresh`). Liveness stays each controller's
own, since every controller sees every status. Writes stay off the ingest path: :meth:`FleetStore.save` queues, one
thread upserts what waits in one transaction, and a row only ever moves to a newer ``(boot_id, seq)``, so controllers
writing one node in any order agree. A registry of the earlier releases (a raw SQLite file at ``--store-path``) is
adopted once by :func:`adopt_sqlite_registry`.
"""

import logging
import sqlite3
import threading
from collections.abc import Iterable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from controller.fleet.registry import Fleet, NodeRecord
from schemas import Channel, PayloadError, StatusBirth, decode, encode

log = logging.getLogger(__name__)

METADATA = sa.MetaData()

fleet_nodes = sa.Table(
    "fleet_nodes",
    METADATA,
    sa.Column("node_id", sa.String(64), primary_key=True),
    sa.Column("birth", sa.LargeBinary, nullable=False),
    sa.Column("boot_id", sa.BigInteger, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("online", sa.Boolean, nullable=False),
    sa.Column("last_seen", sa.Double, nullable=False),
)

_RETRY_S = (1.0, 30.0)
"""First and longest wait before writing again after the database refused a write."""
_IN_CHUNK = 500
"""Node ids per ``IN (...)`` when fetching changed rows."""


class FleetStore:
    """Node records in the database behind ``engine`` (the reservation store's), safe to call from several threads.

    Call :meth:`close` before the engine is disposed: it writes what is still queued.
    """

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._upsert = _upsert_newer(engine.dialect.name)
        self._pending: dict[str, NodeRecord] = {}
        self._busy = False
        self._closing = False
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._write_behind, name="fleet-store", daemon=True)
        self._thread.start()

    def load(self) -> list[NodeRecord]:
        """Every stored record (without telemetry)."""
        with self.engine.connect() as db:
            return _records(db.execute(fleet_nodes.select()))

    def save(self, record: NodeRecord) -> None:
        """Queue one record to be written; returns at once (a newer record of the same node replaces it)."""
        with self._changed:
            queued = self._pending.get(record.node_id)
            if queued is None or _version(record) >= _version(queued):
                self._pending[record.node_id] = record
            self._changed.notify_all()

    def write(self, records: Iterable[NodeRecord]) -> None:
        """Upsert ``records`` now, in one transaction; a stored row with a newer ``(boot_id, seq)`` stays."""
        rows = [_row(r) for r in records]
        if rows:
            with self.engine.begin() as db:
                db.execute(self._upsert, rows)

    def flush(self) -> None:
        """Wait until every queued record is written (or the writer gave up on it at close)."""
        with self._changed:
            self._changed.wait_for(lambda: not self._busy and (not self._pending or not self._thread.is_alive()))

    def refresh(self, fleet: Fleet) -> list[NodeRecord]:
        """Take into ``fleet`` the stored records newer than its own (nodes other controllers saw); returns those.

        Only rows newer than ``fleet``'s are fetched and decoded. A database error is logged and changes nothing.
        """
        held = fleet.versions()
        try:
            with self.engine.connect() as db:
                stored = db.execute(sa.select(fleet_nodes.c.node_id, fleet_nodes.c.boot_id, fleet_nodes.c.seq))
                newer = [r.node_id for r in stored if (r.boot_id, r.seq) > held.get(r.node_id, (-1, -1))]
                records = []
                for start in range(0, len(newer), _IN_CHUNK):
                    chunk = newer[start : start + _IN_CHUNK]
                    records += _records(db.execute(fleet_nodes.select().where(fleet_nodes.c.node_id.in_(chunk))))
        except sa.exc.SQLAlchemyError as exc:
            log.warning(
                "fleet registry not refreshed error=%s action=check the database; next try at the next snapshot", exc
            )
            return []
        taken = fleet.merge(records)
        if taken:
            log.info("fleet registry refreshed from the store nodes=%d", len(taken))
        return taken

    def versions(self) -> dict[str, tuple[int, int]]:
        """``(boot_id, seq)`` of every stored node."""
        with self.engine.connect() as db:
            rows = db.execute(sa.select(fleet_nodes.c.node_id, fleet_nodes.c.boot_id, fleet_nodes.c.seq))
            return {r.node_id: (r.boot_id, r.seq) for r in rows}

    def close(self) -> None:
        """Write what is queued (one attempt if the database is down) and stop the writer; the engine stays open."""
        with self._changed:
            self._closing = True
            self._changed.notify_all()
        self._thread.join()

    def _write_behind(self) -> None:
        retry_s = _RETRY_S[0]
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._pending or self._closing)
                if not self._pending:
                    return
                batch, self._pending, self._busy = self._pending, {}, True
            try:
                self.write(batch.values())
            except sa.exc.SQLAlchemyError as exc:
                retry_s = self._requeue(batch, exc, retry_s)
                continue
            finally:
                with self._changed:
                    self._busy = False
                    self._changed.notify_all()
            retry_s = _RETRY_S[0]

    def _requeue(self, batch: dict[str, NodeRecord], exc: Exception, retry_s: float) -> float:
        with self._changed:
            if self._closing:
                log.error(
                    "fleet registry not written at close nodes=%d error=%s action=none: the broker's retained "
                    "statuses bring them back at the next start",
                    len(batch),
                    exc,
                )
                self._pending = {}
                return retry_s
            for node_id, record in batch.items():
                queued = self._pending.get(node_id)
                if queued is None or _version(record) > _version(queued):
                    self._pending[node_id] = record
            log.warning(
                "fleet registry write failed nodes=%d retry_in_s=%.0f error=%s action=check the database at %s",
                len(batch),
                retry_s,
                exc,
                self.engine.url.render_as_string(hide_password=True),
            )
            self._changed.wait_for(lambda: self._closing, retry_s)
        return min(retry_s * 2, _RETRY_S[1])


@dataclass(frozen=True)
class Adoption:
    """What :func:`adopt_sqlite_registry` did with an earlier release's registry file."""

    found: int
    """Rows in the file."""
    imported: int
    """Rows written into the store (the store had no newer status of those nodes)."""
    unreadable: int
    """Rows whose birth no longer passes the contract (they stay in the renamed file)."""
    renamed_to: Path


def adopt_sqlite_registry(path: Path, store: FleetStore) -> Adoption | None:
    """Import the registry file an earlier release kept at ``path`` (table ``nodes``) once, then rename it.

    None when there is no such file, or it is not such a registry (it is then left as it is). The file is renamed to
    ``<name>.adopted``, so the next start does not import it again; importing twice would change nothing either.
    """
    if not path.is_file():
        return None
    try:
        with closing(sqlite3.connect(path)) as db:
            rows = db.execute("SELECT node_id, birth, boot_id, seq, online, last_seen FROM nodes").fetchall()
    except sqlite3.DatabaseError as exc:
        log.warning(
            "not adopting %s as a fleet registry error=%s action=none if it is not one; else check the file",
            path,
            exc,
        )
        return None
    records = _records(_Row._make(row) for row in rows)
    stored = store.versions()
    newer = [r for r in records if _version(r) > stored.get(r.node_id, (-1, -1))]
    store.write(newer)
    renamed = path.with_name(path.name + ".adopted")
    path.rename(renamed)
    adoption = Adoption(len(rows), len(newer), len(rows) - len(records), renamed)
    log.info(
        "adopted the fleet registry file path=%s nodes=%d imported=%d already_newer=%d unreadable=%d renamed_to=%s "
        "action=delete the renamed file once the nodes look right",
        path,
        adoption.found,
        adoption.imported,
        len(records) - len(newer),
        adoption.unreadable,
        renamed,
    )
    return adoption


class _Row(NamedTuple):
    node_id: str
    birth: bytes
    boot_id: int
    seq: int
    online: bool
    last_seen: float


def _records(rows: Iterable[Any]) -> list[NodeRecord]:
    """Records of table rows; births are re-validated against the contract, and a row that fails is skipped."""
    records = []
    for row in rows:
        try:
            birth = decode(Channel.STATUS, bytes(row.birth))
        except PayloadError as exc:
            log.warning(
                "stored birth refused node=%s error=%s action=none: its next birth replaces it", row.node_id, exc
            )
            continue
        if not isinstance(birth, StatusBirth):
            log.warning("stored birth is a death node=%s action=none: its next birth replaces it", row.node_id)
            continue
        records.append(NodeRecord(birth, row.boot_id, row.seq, bool(row.online), row.last_seen))
    return records


def _row(record: NodeRecord) -> dict[str, Any]:
    return {
        "node_id": record.node_id,
        "birth": encode(record.birth),
        "boot_id": record.boot_id,
        "seq": record.seq,
        "online": record.online,
        "last_seen": record.last_seen,
    }


def _version(record: NodeRecord) -> tuple[int, int]:
    return record.boot_id, record.seq


def _upsert_newer(dialect: str) -> sa.Executable:
    """INSERT … ON CONFLICT DO UPDATE, only where the new row's ``(boot_id, seq)`` is newer."""
    if dialect == "postgresql":
        pg = postgresql.insert(fleet_nodes)
        return pg.on_conflict_do_update(index_elements=["node_id"], **_update_if_newer(pg.excluded))
    if dialect == "sqlite":
        lite = sqlite.insert(fleet_nodes)
        return lite.on_conflict_do_update(index_elements=["node_id"], **_update_if_newer(lite.excluded))
    raise ValueError(f"the fleet store runs on SQLite or PostgreSQL, not {dialect}")


def _update_if_newer(new: Any) -> dict[str, Any]:
    current = fleet_nodes.c
    newer = sa.or_(current.boot_id < new.boot_id, sa.and_(current.boot_id == new.boot_id, current.seq < new.seq))
    columns = ("birth", "boot_id", "seq", "online", "last_seen")
    return {"set_": {c: new[c] for c in columns}, "where": newer}
