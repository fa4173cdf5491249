"""Thermal rules on the enclosure temperature.

- ``temp_out_of_band``: outside the safe band (tighten it per site for perishables), with a clear margin.
- ``temp_baseline_drift``: far from the node's own EWMA baseline (a sudden change: door left open, heater failing on).
  The baseline forgets over ~1/alpha samples, so a daily cycle is followed, not flagged.
- ``temp_peer_outlier``: far from the site's other nodes right now: robust z = 0.6745·(t - median)/MAD.
- ``temp_slow_drift``: a two-sided CUSUM of the node's offset from the site median, relative to its usual offset (a
  slow EWMA). The site median removes weather and the daily cycle; the usual offset absorbs a node that is always
  warmer (sunny side), so what accumulates is the offset *changing* — the slow drift no single score catches.

Per-node state is O(1); site statistics are recomputed once per tick (:func:`site_peers`).
"""

from collections.abc import Iterable
from dataclasses import dataclass, field

from controller.alerts.model import Detail, RuleName, Severity
from controller.alerts.params import ThermalParams
from controller.alerts.rules.base import Emitter
from controller.alerts.stats import MAD_TO_SD, Cusum, Ewma, mad, median


@dataclass(frozen=True, slots=True)
class PeerStats:
    """A site's temperature centre and spread at the last tick."""

    median: float
    mad: float
    nodes: int


@dataclass(slots=True)
class ThermalState:
    """One node's temperature baselines."""

    alpha: float
    offset_alpha: float
    temp: float | None = None
    received_at: float = 0.0
    baseline_z: float | None = None
    baseline: Ewma = field(init=False)
    offset: Ewma = field(init=False)
    cusum: Cusum = field(default_factory=lambda: Cusum(0.5))

    def __post_init__(self) -> None:
        self.baseline = Ewma(self.alpha)
        self.offset = Ewma(self.offset_alpha)


def new_state(p: ThermalParams) -> ThermalState:
    """Empty baselines with the site's smoothing."""
    return ThermalState(p.ewma_alpha, p.cusum_offset_alpha, cusum=Cusum(p.cusum_k))


def record(state: ThermalState, temp: float, now: float, p: ThermalParams, peers: PeerStats | None) -> None:
    """Fold one temperature sample in: own baseline, and the CUSUM of the offset to peers when there are peers."""
    state.temp, state.received_at = temp, now
    z = state.baseline.update(temp, p.ewma_sd_floor_c, p.ewma_raise_z)
    state.baseline_z = z if state.baseline.n > p.ewma_min_samples else None
    if peers is None or peers.nodes < p.peer_min_nodes:
        return
    offset = temp - peers.median
    usual = state.offset.mean
    state.offset.update(offset, p.peer_mad_floor_c)
    if state.offset.n > p.cusum_min_samples:
        spread = max(peers.mad, p.peer_mad_floor_c) / MAD_TO_SD
        state.cusum.update((offset - usual) / spread)


def site_peers(temps: Iterable[float]) -> PeerStats | None:
    """Median and MAD of the fresh temperatures of a site's online nodes (``None`` for an empty site)."""
    values = list(temps)
    if not values:
        return None
    centre = median(values)
    return PeerStats(centre, mad(values, centre), len(values))


def evaluate(state: ThermalState, p: ThermalParams, now: float, emit: Emitter, peers: PeerStats | None) -> None:
    """Band, own-baseline, peer and slow-drift verdicts for one node."""
    temp = state.temp
    if temp is None:
        return
    if temp < p.min_c or temp > p.max_c:
        summary = f"enclosure at {temp:.1f} °C, outside {p.min_c:g}…{p.max_c:g} °C"
        emit.raise_(RuleName.TEMP_OUT_OF_BAND, p.band_severity, summary, for_s=p.band_for_s, value=temp)
    elif p.min_c + p.band_clear_margin_c <= temp <= p.max_c - p.band_clear_margin_c:
        emit.clear(RuleName.TEMP_OUT_OF_BAND)
    z = state.baseline_z
    if z is not None:
        if abs(z) >= p.ewma_raise_z:
            summary = f"enclosure at {temp:.1f} °C, {z:+.1f} sd from its baseline {state.baseline.mean:.1f} °C"
            details: dict[str, Detail] = {"temp_c": temp}
            emit.raise_(
                RuleName.TEMP_BASELINE_DRIFT, Severity.WARNING, summary, for_s=p.ewma_for_s, value=z, details=details
            )
        elif abs(z) <= p.ewma_clear_z:
            emit.clear(RuleName.TEMP_BASELINE_DRIFT)
    if peers is not None and peers.nodes >= p.peer_min_nodes and now - state.received_at <= p.peer_max_age_s:
        _peers(temp, peers, p, emit)
    cusum = state.cusum
    score = max(cusum.high, cusum.low)  # cusum.score without the property call
    if score >= p.cusum_raise:
        summary = f"enclosure drifting from its site's peers (CUSUM {score:.0f})"
        details = {"temp_c": temp}
        emit.raise_(
            RuleName.TEMP_SLOW_DRIFT, Severity.WARNING, summary, for_s=p.cusum_for_s, value=score, details=details
        )
    elif score <= p.cusum_clear:
        emit.clear(RuleName.TEMP_SLOW_DRIFT)


def _peers(temp: float, peers: PeerStats, p: ThermalParams, emit: Emitter) -> None:
    z = MAD_TO_SD * (temp - peers.median) / max(peers.mad, p.peer_mad_floor_c)
    if abs(z) >= p.peer_raise_z:
        summary = f"enclosure at {temp:.1f} °C, site median {peers.median:.1f} °C (robust z {z:+.1f})"
        details: dict[str, Detail] = {"temp_c": temp, "site_median_c": peers.median, "peers": peers.nodes}
        emit.raise_(RuleName.TEMP_PEER_OUTLIER, Severity.WARNING, summary, for_s=p.peer_for_s, value=z, details=details)
    elif abs(z) <= p.peer_clear_z:
        emit.clear(RuleName.TEMP_PEER_OUTLIER)
