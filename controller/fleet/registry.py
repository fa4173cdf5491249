"""Fleet state: which nodes exist, whether each is online, stale or offline, and its last telemetry.

Pure: no I/O, the caller passes the time. A node is known from its birth. Status messages are ordered by
``(boot_id, seq)``, so a late last will of an earlier connection never overrides a newer birth, and a node
silent for longer than ``STALE_FACTOR`` telemetry intervals is ``stale``.
"""

import threading
from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Final

from schemas import Status, StatusBirth
from schemas.ingest_codec import AnyTelemetry

STALE_FACTOR: Final = 1.5
"""A node silent for longer than this many telemetry intervals is stale."""


class NodeState(StrEnum):
    """Liveness of a node as the controller sees it."""

    ONLINE = "online"
    STALE = "stale"
    OFFLINE = "offline"


@dataclass(frozen=True, slots=True)
class NodeRecord:
    """What the controller keeps about one node; persisted in the fleet store (without ``telemetry``)."""

    birth: StatusBirth
    """The latest birth: what the node is, its compartments and telemetry interval."""
    boot_id: int
    seq: int
    """``(boot_id, seq)`` of the latest status applied; older statuses are ignored."""
    online: bool
    last_seen: float
    """Controller clock (seconds since the epoch) when anything was last heard from the node."""
    telemetry: AnyTelemetry | None = None
    """The latest telemetry sample by device time (kept in memory only)."""

    @property
    def node_id(self) -> str:
        """The node's id."""
        return self.birth.node_id

    def state(self, now: float) -> NodeState:
        """Liveness at ``now``."""
        if not self.online:
            return NodeState.OFFLINE
        if now - self.last_seen > STALE_FACTOR * self.birth.telemetry_interval_s:
            return NodeState.STALE
        return NodeState.ONLINE


class Fleet:
    """Every known node's record; apply messages as they arrive, read states with the current time.

    Status changes replace a node's record; the per-message bookkeeping (last heard, latest telemetry) goes into
    plain dicts on the hot path, and records are assembled from both when read. Statuses (from the broker) and
    merges (from the shared store) may come from two threads.
    """

    def __init__(self, records: list[NodeRecord] | None = None) -> None:
        self._nodes: dict[str, NodeRecord] = {r.node_id: r for r in records or []}
        self._heard: dict[str, float] = {}
        self._telemetry: dict[str, AnyTelemetry] = {}
        self._status_lock = threading.Lock()

    def apply_status(self, status: Status, now: float) -> NodeRecord | None:
        """Apply a birth or death; return the new record when it changed what is stored, else None."""
        with self._status_lock:
            current = self._nodes.get(status.node_id)
            if current is not None and (status.boot_id, status.seq) <= (current.boot_id, current.seq):
                return None  # a late or repeated status: a newer one is already applied
            if isinstance(status, StatusBirth):
                record = NodeRecord(birth=status, boot_id=status.boot_id, seq=status.seq, online=True, last_seen=now)
            else:
                if current is None:
                    return None  # a death of a node never born here says nothing useful
                record = replace(current, boot_id=status.boot_id, seq=status.seq, online=False)
            self._nodes[status.node_id] = record
            return record

    def merge(self, records: Iterable[NodeRecord]) -> list[NodeRecord]:
        """Take the records whose ``(boot_id, seq)`` is newer than the one held (or of unknown nodes); return those."""
        taken = []
        with self._status_lock:
            for record in records:
                current = self._nodes.get(record.node_id)
                if current is None or (record.boot_id, record.seq) > (current.boot_id, current.seq):
                    self._nodes[record.node_id] = replace(record, telemetry=None)
                    taken.append(record)
        return taken

    def versions(self) -> dict[str, tuple[int, int]]:
        """``(boot_id, seq)`` of the latest status applied, by node id."""
        nodes = dict(self._nodes)
        return {node_id: (r.boot_id, r.seq) for node_id, r in nodes.items()}

    def seen(self, node_id: str, now: float, telemetry: AnyTelemetry | None = None) -> None:
        """Note that ``node_id`` was heard from at ``now`` (keeping its latest telemetry by device time).

        Kept for a node not born here yet too: telemetry and statuses come on separate MQTT sessions, so a node's
        first telemetry may be handled before its birth (its record shows it once the birth arrives).
        """
        if now > self._heard.get(node_id, 0.0):
            self._heard[node_id] = now
        if telemetry is not None:
            latest = self._telemetry.get(node_id)
            if latest is None or telemetry.ts >= latest.ts:
                self._telemetry[node_id] = telemetry

    def get(self, node_id: str) -> NodeRecord | None:
        """The record of one node, or None when it never sent a birth."""
        record = self._nodes.get(node_id)
        return None if record is None else self._view(record)

    def records(self) -> list[NodeRecord]:
        """All records, ordered by node id."""
        nodes = dict(self._nodes)  # a snapshot: the ingest thread may add nodes
        return [self._view(nodes[k]) for k in sorted(nodes)]

    def counts(self, now: float) -> dict[NodeState, int]:
        """How many nodes are in each state at ``now``."""
        counts = dict.fromkeys(NodeState, 0)
        for record in self.records():
            counts[record.state(now)] += 1
        return counts

    def _view(self, record: NodeRecord) -> NodeRecord:
        heard = self._heard.get(record.node_id, 0.0)
        return replace(record, last_seen=max(record.last_seen, heard), telemetry=self._telemetry.get(record.node_id))
