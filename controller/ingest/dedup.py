"""Which node messages were already stored: a sliding window of sequence numbers per node and boot.

Pure and bounded: per node it keeps the last ``boots`` boots, and per boot a bitmask of the last ``window``
seqs below the highest one seen. A seq older than the window counts as new; storing it again is harmless
because a point carries its device timestamp and overwrites its earlier copy.
"""

from collections import OrderedDict
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
        boots = self._nodes.setdefault(key.node_id, OrderedDict())
        found = boots.get(key.boot_id)
        if found is None:
            boots[key.boot_id] = _Window(key.seq)
            if len(boots) > self.boots:
                boots.popitem(last=False)
            return
        boots.move_to_end(key.boot_id)
        if key.seq > found.high:
            jump = key.seq - found.high  # a jump past the window forgets it (no shift by up to 2**63 bits)
            found.mask = (found.mask << jump | 1) & ((1 << self.window) - 1) if jump < self.window else 1
            found.high = key.seq
        elif found.high - key.seq < self.window:
            found.mask |= 1 << (found.high - key.seq)
