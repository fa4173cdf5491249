"""Small robust statistics for the rules, in pure Python: median, MAD, Theil-Sen slope, EWMA, CUSUM.

Each keeps O(1) state or works on a bounded window, so 10,000 nodes cost little.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

MAD_TO_SD = 0.6745
"""Scales a median absolute deviation to a standard deviation for normal data (robust z = 0.6745·Δ/MAD)."""


def median(values: Sequence[float]) -> float:
    """Median of a non-empty sequence."""
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def mad(values: Sequence[float], centre: float) -> float:
    """Median absolute deviation from ``centre``."""
    return median([abs(v - centre) for v in values])


def theil_sen(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """Robust line ``y = intercept + slope·x``: median of pairwise slopes, then median intercept.

    Needs at least two distinct x; O(n²) in the number of points, so callers keep windows small.
    """
    slopes = [(yj - yi) / (xj - xi) for i, (xi, yi) in enumerate(points) for xj, yj in points[i + 1 :] if xj != xi]
    if not slopes:
        raise ValueError("theil_sen needs at least two points with different x")
    slope = median(slopes)
    return slope, median([y - slope * x for x, y in points])


@dataclass(slots=True)
class Ewma:
    """Exponentially weighted mean and variance of a stream, with the z-score of each new value."""

    alpha: float
    mean: float = 0.0
    var: float = 0.0
    n: int = 0

    def update(self, x: float, sd_floor: float, outlier_z: float = math.inf) -> float | None:
        """Score ``x`` against the baseline so far (``None`` for the first value), then fold it in.

        A value at ``outlier_z`` or beyond moves the mean but not the spread, so a step change stays visible for
        about 1/alpha samples instead of inflating the variance and hiding itself.
        """
        if self.n == 0:
            self.mean, self.n = x, 1
            return None
        diff = x - self.mean
        z = diff / max(math.sqrt(self.var), sd_floor)
        incr = self.alpha * diff
        self.mean += incr
        if abs(z) < outlier_z:
            self.var = (1 - self.alpha) * (self.var + diff * incr)
        self.n += 1
        return z


@dataclass(slots=True)
class Cusum:
    """Two-sided tabular CUSUM of standardised residuals: grows under a persistent shift of more than ``k``."""

    k: float
    high: float = 0.0
    low: float = 0.0

    def update(self, z: float) -> float:
        """Fold in one residual; returns the larger of both sums."""
        self.high = max(0.0, self.high + z - self.k)
        self.low = max(0.0, self.low - z - self.k)
        return max(self.high, self.low)

    @property
    def score(self) -> float:
        """The larger of both sums."""
        return max(self.high, self.low)
