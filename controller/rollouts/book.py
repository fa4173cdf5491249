"""The rollout's per-node records, and the counters kept in step with them so that every check is O(1).

Records are held in target order and addressed by index; anything that decides an order iterates indices sorted, so a
restored book makes exactly the decisions the original would have.
"""

from typing import Any

from controller.rollouts.errors import CorruptStateError
from controller.rollouts.states import FAILURES, IN_FLIGHT, TERMINAL, NodeState


class NodeRecord:
    """One target node's place in the rollout."""

    __slots__ = (
        "attempt",
        "held",
        "node_id",
        "not_before",
        "reason",
        "retries",
        "sent",
        "since",
        "site",
        "state",
        "wave",
    )

    def __init__(
        self,
        node_id: str,
        site: str,
        wave: int,
        state: NodeState = NodeState.QUEUED,
        reason: str | None = None,
        attempt: int = 1,
        since: float = 0.0,
        not_before: float = 0.0,
        sent: bool = False,
        held: bool = False,
        retries: int = 0,
    ) -> None:
        self.node_id = node_id
        self.site = site
        self.wave = wave
        self.state = state
        self.reason = reason
        self.attempt = attempt
        """Command generation: a new command (and attempt) for every retry or re-queue."""
        self.since = since
        """When the state was entered or last confirmed by a report (the step timeout runs from here)."""
        self.not_before = not_before
        """No dispatch before this instant (retry and deferral delays)."""
        self.sent = sent
        """An update command was ever sent in this rollout (so a late report is believable)."""
        self.held = held
        """The node holds a live command (sent, not withdrawn): a ``deferred`` node with it goes on by itself."""
        self.retries = retries
        """Retries after failures or timeouts so far (bounded by the policy)."""


class NodeBook:
    """Records plus per-wave state counts, per-wave waiting sets, in-flight and parked sets, and per-site load.

    Waiting: queued, or deferred by the controller (the engine dispatches these). In flight: holds a site slot.
    Parked: deferred by the node, which holds its command (no site slot, but the step timeout runs).
    """

    def __init__(self, records: list[NodeRecord], waves: int) -> None:
        self.records = records
        self.index = {record.node_id: i for i, record in enumerate(records)}
        if len(self.index) != len(records):
            raise CorruptStateError("a node appears twice among the targets")
        self.wave_sizes = [0] * waves
        self.counts: list[dict[NodeState, int]] = [dict.fromkeys(NodeState, 0) for _ in range(waves)]
        self.waiting: list[set[int]] = [set() for _ in range(waves)]
        self.in_flight: set[int] = set()
        self.parked: set[int] = set()
        self.site_load: dict[str, int] = {}
        self.terminal = 0
        for i, record in enumerate(records):
            self.wave_sizes[record.wave] += 1
            self._enter(i, record)

    def _enter(self, i: int, record: NodeRecord) -> None:
        state = record.state
        self.counts[record.wave][state] += 1
        if state is NodeState.QUEUED or (state is NodeState.DEFERRED and not record.held):
            self.waiting[record.wave].add(i)
        elif state is NodeState.DEFERRED:
            self.parked.add(i)
        elif state in IN_FLIGHT:
            self.in_flight.add(i)
            self.site_load[record.site] = self.site_load.get(record.site, 0) + 1
        else:
            self.terminal += 1

    def _leave(self, i: int, record: NodeRecord) -> None:
        state = record.state
        self.counts[record.wave][state] -= 1
        if state is NodeState.QUEUED or (state is NodeState.DEFERRED and not record.held):
            self.waiting[record.wave].discard(i)
        elif state is NodeState.DEFERRED:
            self.parked.discard(i)
        elif state in IN_FLIGHT:
            self.in_flight.discard(i)
            self.site_load[record.site] -= 1
        else:
            self.terminal -= 1

    def move(self, i: int, state: NodeState, reason: str | None, now: float, *, held: bool | None = None) -> NodeRecord:
        """Put node ``i`` in ``state`` at ``now`` (and set whether it holds a command); keep every counter in step."""
        record = self.records[i]
        self._leave(i, record)
        record.state, record.reason, record.since = state, reason, now
        if held is not None:
            record.held = held
        self._enter(i, record)
        return record

    def failures(self, wave: int) -> int:
        """Nodes of ``wave`` that ended in a failure state."""
        counts = self.counts[wave]
        return sum(counts[state] for state in FAILURES)

    def finished(self, wave: int) -> bool:
        """Whether every node of ``wave`` is in a terminal state."""
        counts = self.counts[wave]
        return sum(counts[state] for state in TERMINAL) == self.wave_sizes[wave]

    def dump(self) -> list[list[Any]]:
        """The records as JSON-ready rows."""
        return [
            [
                r.node_id,
                r.site,
                r.wave,
                r.state.value,
                r.reason,
                r.attempt,
                r.since,
                r.not_before,
                r.sent,
                r.held,
                r.retries,
            ]
            for r in self.records
        ]

    @classmethod
    def load(cls, rows: list[list[Any]], waves: int) -> "NodeBook":
        """Rebuild a book from :meth:`dump` rows."""
        try:
            records = [
                NodeRecord(n, s, int(w), NodeState(st), r, int(a), float(t), float(nb), bool(sent), bool(h), int(rt))
                for n, s, w, st, r, a, t, nb, sent, h, rt in rows
            ]
        except (TypeError, ValueError) as error:
            raise CorruptStateError(
                f"stored node rows do not restore: {error}; action=inspect the rollout row"
            ) from error
        if any(not 0 <= record.wave < waves for record in records):
            raise CorruptStateError("a stored node names a wave the rollout does not have")
        return cls(records, waves)
