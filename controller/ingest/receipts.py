"""Delivery receipts: the keys of messages the controller will never need again, coalesced into seq ranges.

Pure (no I/O) and thread-safe: the write pipeline records the keys of each stored batch, the control spool those of
each spooled batch (duplicates and dead letters included), and a flusher drains them every ``--stored-receipt-s``
into :class:`~schemas.StoredReceipt` messages, one per node and boot (more when over :data:`~schemas.MAX_RANGES`
ranges). A node deletes a message from its outbox once a receipt covers it. Messages mostly arrive in seq order, so
recording one usually extends the last range in place.
"""

import bisect
import threading
from collections.abc import Iterable

from controller.ingest.dedup import MessageKey
from schemas import MAX_RANGES, StoredReceipt


class Receipts:
    """Recorded keys per (node, boot) as sorted, disjoint, non-adjacent ``[first, last]`` ranges, until drained."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, int], list[list[int]]] = {}

    def record(self, keys: Iterable[MessageKey]) -> None:
        """Remember ``keys`` as stored (any order, repeats allowed)."""
        with self._lock:
            pending = self._pending
            for node_id, boot_id, seq in keys:
                ranges = pending.get((node_id, boot_id))
                if ranges is None:
                    pending[node_id, boot_id] = [[seq, seq]]
                    continue
                last = ranges[-1]
                if last[1] + 1 == seq:
                    last[1] = seq
                elif not last[0] <= seq <= last[1]:
                    _insert(ranges, seq)

    def drain(self) -> list[StoredReceipt]:
        """The receipts of everything recorded since the last drain (nodes in no particular order); forgets it."""
        with self._lock:
            pending, self._pending = self._pending, {}
        return [
            StoredReceipt(node_id=node_id, boot_id=boot_id, ranges=[(r[0], r[1]) for r in ranges[i : i + MAX_RANGES]])
            for (node_id, boot_id), ranges in pending.items()
            for i in range(0, len(ranges), MAX_RANGES)
        ]

    def __len__(self) -> int:
        """(node, boot) pairs waiting to be drained."""
        return len(self._pending)


def _insert(ranges: list[list[int]], seq: int) -> None:
    """Add ``seq`` to sorted disjoint non-adjacent ``ranges``, merging neighbours it joins."""
    i = bisect.bisect_right(ranges, seq, key=lambda r: r[0])  # ranges[:i] start at or before seq
    before = ranges[i - 1] if i else None
    if before is not None:
        if seq <= before[1]:
            return
        if before[1] + 1 == seq:
            before[1] = seq
            if i < len(ranges) and ranges[i][0] == seq + 1:
                before[1] = ranges.pop(i)[1]
            return
    if i < len(ranges) and ranges[i][0] == seq + 1:
        ranges[i][0] = seq
    else:
        ranges.insert(i, [seq, seq])
