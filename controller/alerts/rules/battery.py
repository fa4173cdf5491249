"""Battery rules: swap when empty is forecast within the horizon (or below the floor); replace a worn pack.

The forecast fits a Theil-Sen line (robust to outliers and sensor steps) to the state of charge over a window of at
most ``max_points`` points, one kept every ``window_h / max_points``, so a node costs O(max_points) memory and the
O(n²) fit runs at most once per point kept (when a forecast is next asked for). Charging, shore power or a jump up
(a swapped pack) empty the window: the slope before them says nothing about the discharge after. Too few points or
too short a span give no forecast; then the swap alert keeps its state unless the window was emptied by one of those
events (the pack is known good).
"""

from collections import deque
from dataclasses import dataclass, field

from controller.alerts.inputs import TelemetrySample
from controller.alerts.model import Detail, RuleName, Severity
from controller.alerts.params import BatteryParams
from controller.alerts.rules.base import Emitter
from controller.alerts.stats import theil_sen

_H = 3600.0


@dataclass(frozen=True, slots=True)
class BatteryForecast:
    """Time to empty of one node's pack, from its discharge slope; what the swap queue prioritises by."""

    node_id: str
    soc_pct: float
    slope_pct_per_h: float
    """Negative while discharging."""
    hours_to_empty: float | None
    """``None`` when the pack is not discharging."""
    points: int
    fitted_at: float


@dataclass(slots=True)
class BatteryState:
    """One node's battery history: a bounded window and the fit made when a point was last kept."""

    points: deque[tuple[float, float]] = field(default_factory=deque)
    soc: float | None = None
    charging: bool = False
    on_shore: bool = False
    cycle_count: int | None = None
    known_good: bool = False
    """The window was emptied by charging, shore power or a swap: no forecast means no swap needed."""
    stale_fit: bool = False
    """A point was kept since the last fit; the fit runs when a forecast is next asked for."""
    slope_per_s: float | None = None
    fitted_soc: float = 0.0
    fitted_at: float = 0.0


def record(state: BatteryState, sample: TelemetrySample, p: BatteryParams) -> None:
    """Fold one telemetry sample into the node's battery state."""
    jumped = state.soc is not None and sample.soc_pct - state.soc >= p.swap_jump_pct
    state.soc, state.charging, state.cycle_count = sample.soc_pct, sample.charging, sample.cycle_count
    state.on_shore = sample.power_source == "shore"
    if jumped or state.charging or state.on_shore:
        state.points.clear()
        state.slope_per_s, state.known_good, state.stale_fit = None, True, False
        return
    window_s = p.window_h * _H
    if state.points and sample.ts - state.points[-1][0] < window_s / p.max_points:
        return  # too close to the last kept point (or out of order): the window keeps its spacing
    state.points.append((sample.ts, sample.soc_pct))
    while len(state.points) > p.max_points or state.points[0][0] < sample.ts - window_s:
        state.points.popleft()
    state.stale_fit = True


def _fit(state: BatteryState, p: BatteryParams) -> None:
    state.stale_fit = False
    points = state.points
    if len(points) < p.min_points or points[-1][0] - points[0][0] < p.min_span_h * _H:
        state.slope_per_s = None
        return
    t0 = points[0][0]
    slope, intercept = theil_sen([(t - t0, soc) for t, soc in points])
    state.slope_per_s = slope
    state.fitted_at = points[-1][0]
    state.fitted_soc = intercept + slope * (state.fitted_at - t0)


def forecast(node_id: str, state: BatteryState, p: BatteryParams, now: float) -> BatteryForecast | None:
    """The node's time to empty at ``now``, or ``None`` when there is no forecast (charging, too little data)."""
    outlook = _outlook(state, p, now)
    if outlook is None or state.soc is None:
        return None
    slope_h, hours = outlook
    return BatteryForecast(node_id, state.soc, slope_h, hours, len(state.points), state.fitted_at)


def _outlook(state: BatteryState, p: BatteryParams, now: float) -> tuple[float, float | None] | None:
    """The forecast's slope (%/h) and hours to empty (``None``: not discharging), or ``None``: no forecast."""
    if state.stale_fit:
        _fit(state, p)
    if state.slope_per_s is None or state.soc is None or state.charging or state.on_shore:
        return None
    slope_h = state.slope_per_s * _H
    hours = None
    if slope_h < 0:
        hours = max(0.0, (state.fitted_soc - p.empty_pct) / -slope_h - max(0.0, now - state.fitted_at) / _H)
    return slope_h, hours


def evaluate(state: BatteryState, p: BatteryParams, now: float, emit: Emitter) -> None:
    """Swap and replacement verdicts for one node."""
    if state.soc is None:
        return
    if emit.wants(RuleName.BATTERY_SWAP):
        _swap(state, p, now, emit)
    if state.cycle_count is not None and state.cycle_count >= p.replace_cycles:
        emit.raise_(
            RuleName.BATTERY_REPLACE,
            Severity.WARNING,
            f"pack at {state.cycle_count} cycles (replace at {p.replace_cycles})",
            value=float(state.cycle_count),
        )
    elif state.cycle_count is not None:
        emit.clear(RuleName.BATTERY_REPLACE)


def _swap(state: BatteryState, p: BatteryParams, now: float, emit: Emitter) -> None:
    soc = state.soc
    assert soc is not None
    if state.charging or state.on_shore:
        emit.clear(RuleName.BATTERY_SWAP)
        return
    outlook = _outlook(state, p, now)
    slope_h, hours = (None, None) if outlook is None else outlook
    if soc <= p.floor_pct:
        severity, summary = Severity.CRITICAL, f"charge {soc:.0f}% at or below the {p.floor_pct:.0f}% floor"
    elif hours is not None and hours <= p.horizon_h:
        severity = Severity.CRITICAL if hours <= p.critical_h else Severity.WARNING
        summary = f"empty in {hours:.1f} h at {soc:.0f}% (swap within {p.horizon_h:.0f} h)"
    else:
        if soc >= p.floor_clear_pct and (
            (outlook is not None and (hours is None or hours >= p.clear_horizon_h))
            or (outlook is None and state.known_good)
        ):
            emit.clear(RuleName.BATTERY_SWAP)
        return
    details: dict[str, Detail] = {"soc_pct": soc, "hours_to_empty": hours, "slope_pct_per_h": slope_h}
    emit.raise_(
        RuleName.BATTERY_SWAP,
        severity,
        summary,
        for_s=p.swap_for_s,
        keep_firing_for_s=p.swap_keep_firing_for_s,
        value=hours,
        details=details,
    )
