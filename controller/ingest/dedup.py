"""Which node messages were already stored: a sliding window of sequence numbers per node and boot.

Pure and bounded: per node it keeps the last ``boots`` boots, and per boot a bitmask of the last ``window``
seqs below the highest one seen. A seq older than the window counts as new; storing it again is harmless
because a point carries its device timestamp and overwrites its earlier copy.

:meth:`SeenWindow.contains` may run in one thread while :meth:`SeenWindow.add_all` runs in another without a lock:
a boot's window is an immutable ``(high, mask)`` pair replaced by one store, so a reader sees it before or after an
update, never half of one (the ingest thread asks once per message; the writer thread adds once per batch).
"""

from collections import OrderedDict
from collections.abc import Iterable
from typing import NamedTuple


class MessageKey(NamedTuple):
    """Identity of one node message."""

    node_id: str
    boot_id: int
    seq: int


class SeenWindow:
    """Remembers recently stored message keys; :meth:`contains` answers whether one was stored before."""

    def __init__(self, window: int = 4096, boots: int = 4) -> None:
        if window < 1 or boots < 1:
            raise ValueError("window and boots must be at least 1")
        self.window = window
        self.boots = boots
        self._full = (1 << window) - 1
        self._nodes: dict[str, OrderedDict[int, tuple[int, int]]] = {}
        """Per node, per boot (least recently added first): the highest seq and the bitmask of seqs below it."""

    def contains(self, key: MessageKey) -> bool:
        """True when ``key`` was added and is still inside its boot's window."""
        boots = self._nodes.get(key.node_id)
        found = None if boots is None else boots.get(key.boot_id)
        if found is None:
            return False
        high, mask = found
        offset = high - key.seq
        return 0 <= offset < self.window and bool(mask >> offset & 1)

    def add(self, key: MessageKey) -> None:
        """Record ``key`` as stored."""
        self.add_all((key,))

    def add_all(self, keys: Iterable[MessageKey]) -> None:
        """Record every key of a stored batch (one call per batch: the writer holds the ingest's lock meanwhile)."""
        nodes = self._nodes
        window = self.window
        full = self._full
        for node_id, boot_id, seq in keys:
            boots = nodes.get(node_id)
            if boots is None:
                boots = nodes[node_id] = OrderedDict()
            found = boots.get(boot_id)
            if found is None:
                boots[boot_id] = (seq, 1)
                if len(boots) > self.boots:
                    boots.popitem(last=False)
                continue
            boots.move_to_end(boot_id)
            high, mask = found
            if seq > high:
                jump = seq - high  # a jump past the window forgets it (no shift by up to 2**63 bits)
                boots[boot_id] = (seq, (mask << jump | 1) & full if jump < window else 1)
            elif high - seq < window:
                boots[boot_id] = (high, mask | 1 << (high - seq))
