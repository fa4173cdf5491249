"""Every rule's parameters with their defaults: one pydantic model per rule family.

``rules.example.toml`` next to this module documents the same defaults for operators;
:mod:`controller.alerts.rules_file` reads a rules file into these models, per fleet and per site.
"""

from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from controller.alerts.model import RuleName, Severity


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _ordered(low: float, high: float, low_name: str, high_name: str) -> None:
    if low > high:
        raise ValueError(f"{low_name} ({low}) must be ≤ {high_name} ({high})")


class BatteryParams(_Params):
    """Swap by forecast time to empty (Theil-Sen slope of state of charge) or floor; pack replacement by cycles."""

    window_h: float = Field(6.0, gt=0, le=168, description="State-of-charge history the forecast is fitted on.")
    max_points: int = Field(48, ge=3, le=500, description="Points kept in the window (one per window_h/max_points).")
    min_points: int = Field(8, ge=3, description="No forecast from fewer points.")
    min_span_h: float = Field(2.0, gt=0, description="No forecast from points spanning less time.")
    empty_pct: float = Field(5.0, ge=0, le=100, description="State of charge counted as empty (the BMS cut-off).")
    horizon_h: float = Field(24.0, gt=0, description="Swap alert when empty is forecast within this many hours.")
    clear_horizon_h: float = Field(30.0, gt=0, description="The forecast swap alert clears beyond this horizon.")
    critical_h: float = Field(6.0, ge=0, description="A forecast within this many hours is critical.")
    floor_pct: float = Field(20.0, ge=0, le=100, description="Swap alert (critical) at or below this charge.")
    floor_clear_pct: float = Field(25.0, ge=0, le=100, description="The floor alert clears at or above this charge.")
    swap_jump_pct: float = Field(20.0, gt=0, le=100, description="A rise this big between samples is a pack swap.")
    swap_for_s: float = Field(300.0, ge=0, description="The swap condition holds this long before it fires.")
    swap_keep_firing_for_s: float = Field(600.0, ge=0, description="Clear holds this long before it resolves.")
    replace_cycles: int = Field(1800, ge=1, description="Replacement alert at this cycle count (90 % of 2000).")

    @model_validator(mode="after")
    def _hysteresis(self) -> Self:
        _ordered(self.horizon_h, self.clear_horizon_h, "horizon_h", "clear_horizon_h")
        _ordered(self.critical_h, self.horizon_h, "critical_h", "horizon_h")
        _ordered(self.floor_pct, self.floor_clear_pct, "floor_pct", "floor_clear_pct")
        _ordered(self.empty_pct, self.floor_pct, "empty_pct", "floor_pct")
        _ordered(self.min_points, self.max_points, "min_points", "max_points")
        return self


class ThermalParams(_Params):
    """Enclosure temperature: safe band, drift from the node's EWMA baseline, CUSUM, outlier among site peers."""

    min_c: float = Field(-20.0, ge=-60, le=125, description="Safe band low end (perishables: about 2).")
    max_c: float = Field(50.0, ge=-60, le=125, description="Safe band high end (perishables: about 8).")
    band_clear_margin_c: float = Field(1.0, ge=0, description="Back inside the band by this much to clear.")
    band_for_s: float = Field(300.0, ge=0, description="Outside the band this long before it fires.")
    band_severity: Severity = Field(Severity.CRITICAL, description="Severity of the out-of-band alert.")
    ewma_alpha: float = Field(0.01, gt=0, lt=1, description="Baseline weight of each new sample (~1/alpha memory).")
    ewma_min_samples: int = Field(60, ge=2, description="Samples before the baseline is trusted.")
    ewma_sd_floor_c: float = Field(0.5, gt=0, description="Smallest spread the baseline z-score divides by.")
    ewma_raise_z: float = Field(4.0, gt=0, description="Drift alert at this |z| against the baseline.")
    ewma_clear_z: float = Field(2.0, ge=0, description="Drift alert clears at this |z|.")
    ewma_for_s: float = Field(600.0, ge=0, description="Drift holds this long before it fires.")
    cusum_offset_alpha: float = Field(0.001, gt=0, lt=1, description="Weight in the node's usual offset to peers.")
    cusum_min_samples: int = Field(60, ge=2, description="Samples before the usual offset is trusted.")
    cusum_k: float = Field(0.5, ge=0, description="CUSUM slack, in peer standard deviations.")
    cusum_raise: float = Field(12.0, gt=0, description="Slow-drift alert when the CUSUM reaches this.")
    cusum_clear: float = Field(3.0, ge=0, description="Slow-drift alert clears when the CUSUM falls to this.")
    cusum_for_s: float = Field(0.0, ge=0, description="Slow drift holds this long before it fires.")
    peer_min_nodes: int = Field(4, ge=3, description="Peer comparison needs this many fresh nodes in the site.")
    peer_max_age_s: float = Field(600.0, gt=0, description="Only temperatures this recent count as peers.")
    peer_mad_floor_c: float = Field(0.5, gt=0, description="Smallest MAD the robust z-score divides by.")
    peer_raise_z: float = Field(3.5, gt=0, description="Outlier alert at this robust |z| against site peers.")
    peer_clear_z: float = Field(2.5, ge=0, description="Outlier alert clears at this |z|.")
    peer_for_s: float = Field(900.0, ge=0, description="Outlier holds this long before it fires.")

    @model_validator(mode="after")
    def _hysteresis(self) -> Self:
        _ordered(self.min_c + 2 * self.band_clear_margin_c, self.max_c, "min_c + 2·band_clear_margin_c", "max_c")
        _ordered(self.ewma_clear_z, self.ewma_raise_z, "ewma_clear_z", "ewma_raise_z")
        _ordered(self.cusum_clear, self.cusum_raise, "cusum_clear", "cusum_raise")
        _ordered(self.peer_clear_z, self.peer_raise_z, "peer_clear_z", "peer_raise_z")
        return self


class MechanicalParams(_Params):
    """Compartments: repeated jams, doors held open, lock faults, door-switch latency creeping up (wear)."""

    jam_window_s: float = Field(3600.0, gt=0, description="Jams are counted over this window.")
    jam_raise_count: int = Field(3, ge=1, description="Jam alert at this many jams in the window.")
    jam_clear_count: int = Field(0, ge=0, description="Jam alert clears at this many jams in the window.")
    door_open_max_s: float = Field(300.0, gt=0, description="A door open longer than this is held open.")
    lock_fault_quiet_s: float = Field(3600.0, gt=0, description="A lock fault clears after this long without one.")
    stuck_unlocked_s: float = Field(60.0, gt=0, description="A lock reading unlocked this long is stuck (relay).")
    latency_baseline_n: int = Field(20, ge=3, le=200, description="First switch latencies forming the baseline.")
    latency_recent_n: int = Field(10, ge=3, le=200, description="Latest switch latencies compared with it.")
    latency_raise_ratio: float = Field(1.5, gt=1, description="Wear alert when the recent median is this times base.")
    latency_clear_ratio: float = Field(1.2, ge=1, description="Wear alert clears at this ratio.")
    latency_min_increase_ms: float = Field(50.0, ge=0, description="...and at least this many ms slower.")

    @model_validator(mode="after")
    def _hysteresis(self) -> Self:
        _ordered(self.jam_clear_count, self.jam_raise_count - 1, "jam_clear_count", "jam_raise_count - 1")
        _ordered(self.latency_clear_ratio, self.latency_raise_ratio, "latency_clear_ratio", "latency_raise_ratio")
        return self


class SecurityParams(_Params):
    """Uncommanded door opens, keypad lockouts, the fleet open breaker."""

    uncommanded_quiet_s: float = Field(900.0, gt=0, description="Uncommanded-open alert clears after this long quiet.")
    uncommanded_severity: Severity = Field(Severity.CRITICAL, description="Severity of an uncommanded open.")
    keypad_severity: Severity = Field(Severity.WARNING, description="Severity of a keypad lockout.")
    breaker_severity: Severity = Field(Severity.CRITICAL, description="Severity of the tripped open breaker.")


class OperationsParams(_Params):
    """Liveness and data quality: offline, stale, outbox drops, clock skew, and a site losing its uplink."""

    offline_after_s: float = Field(90.0, gt=0, description="No message for this long is offline, will or not.")
    offline_for_s: float = Field(60.0, ge=0, description="Offline this long before it fires.")
    offline_keep_firing_for_s: float = Field(60.0, ge=0, description="Back online this long before it resolves.")
    stale_after_s: float = Field(60.0, gt=0, description="Online but no telemetry for this long is stale.")
    stale_for_s: float = Field(60.0, ge=0, description="Stale this long before it fires.")
    outbox_quiet_s: float = Field(3600.0, gt=0, description="Outbox-drop alert clears after this long without drops.")
    skew_raise_s: float = Field(120.0, gt=0, description="Clock-skew alert at this |receive - device| time.")
    skew_clear_s: float = Field(30.0, ge=0, description="Clock-skew alert clears at this skew.")
    skew_for_s: float = Field(300.0, ge=0, description="Skewed this long before it fires.")
    site_min_nodes: int = Field(3, ge=2, description="A site alert needs at least this many nodes offline...")
    site_raise_share: float = Field(0.5, gt=0, le=1, description="...and this share of the site's nodes.")
    site_clear_share: float = Field(0.25, ge=0, le=1, description="The site alert clears below this share.")
    site_for_s: float = Field(60.0, ge=0, description="The site is down this long before it fires.")

    @model_validator(mode="after")
    def _hysteresis(self) -> Self:
        _ordered(self.skew_clear_s, self.skew_raise_s, "skew_clear_s", "skew_raise_s")
        _ordered(self.site_clear_share, self.site_raise_share, "site_clear_share", "site_raise_share")
        return self


_MAINTENANCE_DEFAULT = (
    RuleName.BATTERY_SWAP,
    RuleName.BATTERY_REPLACE,
    RuleName.NODE_OFFLINE,
    RuleName.NODE_STALE,
    RuleName.DOOR_HELD_OPEN,
)


class SuppressionParams(_Params):
    """Which rules stay quiet for a node in maintenance, and rules switched off."""

    maintenance_rules: tuple[RuleName, ...] = Field(_MAINTENANCE_DEFAULT, description="Quiet during maintenance.")
    disabled: tuple[RuleName, ...] = Field((), description="Rules that never raise.")


class RuleSet(_Params):
    """The parameters of every rule, for the fleet or one site."""

    battery: BatteryParams = BatteryParams()
    thermal: ThermalParams = ThermalParams()
    mechanical: MechanicalParams = MechanicalParams()
    security: SecurityParams = SecurityParams()
    operations: OperationsParams = OperationsParams()
    suppression: SuppressionParams = SuppressionParams()

    def maintenance_quiet(self) -> frozenset[str]:
        """Rules a node in maintenance does not evaluate."""
        return frozenset(self.suppression.maintenance_rules)
