"""Which node messages were already stored: a sliding window of sequence numbers per node and boot.

Pure and bounded: per node it keeps the last ``boots`` boots, and per boot a bitmask of the last ``window``
seqs below the highest one seen. A seq older than the window counts as new; storing it again is harmless
because a point carries its device timestamp and overwrites its earlier copy.
"""

from collections import OrderedDict
from collections.abc import Iterable
from typing import NamedTuple


class MessageKey(NamedTuple):
    """Identity of one node message."""

    node_id: str
    boot_id: int
    seq: int


class _Window:
    __slots__ = ("high", "mask")

    def __init__(self, seq: int) -> None:
        self.high = seq
        self.mask = 1


class SeenWindow:
    """Remembers recently stored message keys; :meth:`contains` answers whether one was stored before."""

    def __init__(self, window: int = 4096, boots: int = 4) -> None:
        if window < 1 or boots < 1:
            raise ValueError("window and boots must be at least 1")
        self.window = window
        self.boots = boots
        self._full = (1 << window) - 1
        self._nodes: dict[str, OrderedDict[int, _Window]] = {}

    def contains(self, key: MessageKey) -> bool:
        """True when ``key`` was added and is still inside its boot's window."""
        boots = self._nodes.get(key.node_id)
        found = None if boots is None else boots.get(key.boot_id)
        if found is None or key.seq > found.high:
            return False
        offset = found.high - key.seq
        return offset < self.window and bool(found.mask >> offset & 1)

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
                boots[boot_id] = _Window(seq)
                if len(boots) > self.boots:
                    boots.popitem(last=False)
                continue
            boots.move_to_end(boot_id)
            high = found.high
            if seq > high:
                jump = seq - high  # a jump past the window forgets it (no shift by up to 2**63 bits)
                found.mask = (found.mask << jump | 1) & full if jump < window else 1
                found.high = seq
            elif high - seq < window:
                found.mask |= 1 << (high - seq)
