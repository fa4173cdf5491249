"""Log at most once per key and interval, counting what was held back (so a flood of bad input stays readable)."""


class Throttle:
    """Lets the first event of a key through, then at most one per ``interval_s``; pure (the caller passes time)."""

    def __init__(self, interval_s: float = 60.0) -> None:
        self.interval_s = interval_s
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def allow(self, key: str, now: float) -> int | None:
        """None when this event should not be logged; else how many of ``key`` were held back since the last."""
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            self._held[key] = self._held.get(key, 0) + 1
            return None
        self._last[key] = now
        return self._held.pop(key, 0)
