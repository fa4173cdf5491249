"""The dispatch rate limit: at most N update commands in any 60 seconds (a sliding window, exact)."""

from collections import deque
from collections.abc import Iterable

WINDOW_S = 60.0


class DispatchRate:
    """Remembers when the last commands went out and says how many more may go now."""

    def __init__(self, per_minute: int, sent_at: Iterable[float] = ()) -> None:
        self.per_minute = per_minute
        self._sent_at: deque[float] = deque(sorted(sent_at))

    def available(self, now: float) -> int:
        """Commands that may be sent at ``now`` without exceeding the limit."""
        while self._sent_at and self._sent_at[0] <= now - WINDOW_S:
            self._sent_at.popleft()
        return max(0, self.per_minute - len(self._sent_at))

    def record(self, now: float) -> None:
        """Count one command sent at ``now``."""
        self._sent_at.append(now)

    def dump(self) -> list[float]:
        """Send times still inside the window, for the store."""
        return list(self._sent_at)
