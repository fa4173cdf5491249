"""Token buckets: at most ``burst`` at once and ``rate_per_s`` sustained. Pure (the caller passes the time).

The controller puts one in front of every courier open: a fleet-wide circuit breaker, so that a leaked credential
or a runaway client can never open a whole network's lockers in one night.
"""

import threading


class TokenBucket:
    """Starts full; each :meth:`take` spends one token if there is one."""

    def __init__(self, rate_per_s: float, burst: int, now: float) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be > 0 and burst >= 1")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._tokens = float(burst)
        self._at = now

    def take(self, now: float) -> float:
        """0.0 when a token was spent; otherwise the seconds until one will be available (nothing is spent)."""
        self._tokens = min(self.burst, self._tokens + max(0.0, now - self._at) * self.rate_per_s)
        self._at = max(self._at, now)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate_per_s

    def full_in(self, now: float) -> float:
        """Seconds until the bucket is full again (0.0 when it is); nothing is spent."""
        tokens = min(self.burst, self._tokens + max(0.0, now - self._at) * self.rate_per_s)
        return (self.burst - tokens) / self.rate_per_s


class KeyedLimits:
    """One :class:`TokenBucket` per key (a courier's API key, a client address), created on first use; thread-safe."""

    def __init__(self, rate_per_s: float, burst: int, max_keys: int = 100_000) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()

    def take(self, key: str, now: float) -> float:
        """0.0 when ``key`` may go ahead; otherwise the seconds it must wait."""
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                if len(self._buckets) >= self.max_keys:
                    self._buckets.clear()  # a flood of new keys: forget (everyone starts with a full bucket)
                bucket = self._buckets[key] = TokenBucket(self.rate_per_s, self.burst, now)
            return bucket.take(now)


class RateLimitedError(Exception):
    """A limit refused a request; nothing was done. Answered 429 with ``Retry-After``."""

    def __init__(self, detail: str, retry_after_s: float) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s
