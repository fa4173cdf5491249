"""Write batches: lines gathered until a size or an age is reached, with what to acknowledge once stored.

Pure: the caller passes the time. The ingest adapter adds each message's lines together with its MQTT
acknowledgement token; the writer takes a batch, stores it, and only then acknowledges its tokens, in the order
the messages arrived (MQTT requires PUBACKs in receive order).
"""

from collections import deque
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from controller.ingest.dedup import MessageKey

T = TypeVar("T")


@dataclass
class Batch(Generic[T]):
    """Lines to write, then the tokens to acknowledge and the keys to remember as stored."""

    lines: list[str] = field(default_factory=list)
    tokens: list[T] = field(default_factory=list)
    keys: list[MessageKey] = field(default_factory=list)
    opened_at: float = 0.0


class Batcher(Generic[T]):
    """Fills batches of up to ``max_lines``; the oldest is due once full or ``max_age_s`` old.

    Batches close at ``max_lines`` (one message's lines are never split), so while one is being written the next
    ones keep filling and the broker keeps delivering, instead of everything waiting for one huge write.
    """

    def __init__(self, max_lines: int, max_age_s: float) -> None:
        if max_lines < 1 or max_age_s <= 0:
            raise ValueError("max_lines must be >= 1 and max_age_s > 0")
        self.max_lines = max_lines
        self.max_age_s = max_age_s
        self._full: deque[Batch[T]] = deque()
        self._open: Batch[T] = Batch()

    def add(self, now: float, lines: list[str], token: T | None = None, key: MessageKey | None = None) -> bool:
        """Append one message's lines (possibly none) with its ack token and dedup key.

        Returns True when the writer has something new to wait for or take: the open batch was opened (a new
        deadline) or closed full. Otherwise nothing it waits on changed (it already sleeps until the deadline).
        """
        batch = self._open
        opened = not batch.lines and not batch.tokens
        if opened:
            batch.opened_at = now
        batch_lines = batch.lines
        batch_lines.extend(lines)
        if token is not None:
            batch.tokens.append(token)
        if key is not None:
            batch.keys.append(key)
        if len(batch_lines) >= self.max_lines:
            self._full.append(batch)
            self._open = Batch()
            return True
        return opened

    @property
    def empty(self) -> bool:
        """True when nothing waits to be written or acknowledged."""
        return not self._full and not self._open.lines and not self._open.tokens

    def deadline(self) -> float | None:
        """When the oldest batch becomes due by age, or None when there is none."""
        if self._full:
            return self._full[0].opened_at + self.max_age_s
        return None if self.empty else self._open.opened_at + self.max_age_s

    def due(self, now: float) -> bool:
        """True when a batch is full, or the open one is old enough to write."""
        deadline = self.deadline()
        return bool(self._full) or (deadline is not None and now >= deadline)

    def take(self) -> Batch[T]:
        """The oldest full batch, else the open one (closing it); batches come out in arrival order."""
        if self._full:
            return self._full.popleft()
        batch, self._open = self._open, Batch()
        return batch
