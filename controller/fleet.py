"""Fleet state: which nodes exist, whether each is online, stale or offline, and its last telemetry.

Pure: no I/O, the caller passes the time. A node is known from its birth. Status messages are ordered by
``(boot_id, seq)``, so a late last will of an earlier connection never overrides a newer birth, and a node
silent for longer than ``STALE_FACTOR`` telemetry intervals is ``stale``.
"""

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Final

from schemas import Status, StatusBirth, StatusDeath, Telemetry

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
    telemetry: Telemetry | None = None

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
    """Every known node's record; apply messages as they arrive, read states with the current time."""

    def __init__(self, records: list[NodeRecord] | None = None) -> None:
        self._nodes: dict[str, NodeRecord] = {r.node_id: r for r in records or []}

    def apply_status(self, status: Status, now: float) -> NodeRecord | None:
        """Apply a birth or death; return the new record when it changed what is stored, else None."""
        current = self._nodes.get(status.node_id)
        if current is not None and (status.boot_id, status.seq) <= (current.boot_id, current.seq):
            return None  # a late or repeated status: a newer one is already applied
        if isinstance(status, StatusBirth):
            record = NodeRecord(
                birth=status,
                boot_id=status.boot_id,
                seq=status.seq,
                online=True,
                last_seen=now,
                telemetry=current.telemetry if current else None,
            )
        else:
            if current is None:
                return None  # a death of a node never born here says nothing useful
            record = _died(current, status)
        self._nodes[status.node_id] = record
        return record

    def seen(self, node_id: str, now: float, telemetry: Telemetry | None = None) -> None:
        """Note that ``node_id`` was heard from at ``now`` (keeping its latest telemetry by device time)."""
        current = self._nodes.get(node_id)
        if current is None:
            return
        latest = current.telemetry
        if telemetry is not None and (latest is None or telemetry.ts >= latest.ts):
            latest = telemetry
        self._nodes[node_id] = replace(current, last_seen=max(now, current.last_seen), telemetry=latest)

    def get(self, node_id: str) -> NodeRecord | None:
        """The record of one node, or None when it never sent a birth."""
        return self._nodes.get(node_id)

    def records(self) -> list[NodeRecord]:
        """All records, ordered by node id."""
        nodes = dict(self._nodes)
        return [nodes[k] for k in sorted(nodes)]

    def counts(self, now: float) -> dict[NodeState, int]:
        """How many nodes are in each state at ``now``."""
        counts = dict.fromkeys(NodeState, 0)
        for record in list(self._nodes.values()):  # a snapshot: the ingest thread may add nodes
            counts[record.state(now)] += 1
        return counts


def _died(current: NodeRecord, death: StatusDeath) -> NodeRecord:
    return replace(current, boot_id=death.boot_id, seq=death.seq, online=False)
