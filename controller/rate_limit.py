"""A token bucket: at most ``burst`` at once and ``rate_per_s`` sustained. Pure (the caller passes the time).

The controller puts one in front of every courier open: a fleet-wide circuit breaker, so that a leaked credential
or a runaway client can never open a whole network's lockers in one night.
"""


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
