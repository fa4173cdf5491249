"""How a rollout proceeds: wave sizes, thresholds, rate, site limits, timeouts and retries (strict by default)."""

import math
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from controller.rollouts.gating import MaintenanceWindow
from schemas.ota import OtaReason


class WaveRules(BaseModel):
    """When a wave lets the next one start, and when it stops the rollout; counts and percents of the wave's size."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    success_count: int | None = Field(default=None, ge=0, description="Advance once at least this many succeeded.")
    success_percent: float | None = Field(default=100.0, ge=0, le=100, description="...and this share of the wave.")
    failure_count: int | None = Field(default=0, ge=0, description="Abort once more than this many failed.")
    failure_percent: float | None = Field(default=None, ge=0, le=100, description="...or more than this share.")

    @model_validator(mode="after")
    def _has_failure_rule(self) -> Self:
        if self.failure_count is None and self.failure_percent is None:
            raise ValueError("a wave needs failure_count or failure_percent, or nothing would ever stop the rollout")
        return self

    def required_successes(self, size: int) -> int:
        """Successes a wave of ``size`` nodes needs before the next wave starts (all of them if no rule is set)."""
        if self.success_count is None and self.success_percent is None:
            return size
        by_count = self.success_count or 0
        by_percent = math.ceil(self.success_percent * size / 100 - 1e-9) if self.success_percent is not None else 0
        return min(size, max(by_count, by_percent))

    def breached(self, failures: int, size: int) -> bool:
        """Whether ``failures`` in a wave of ``size`` nodes are above a failure threshold."""
        if self.failure_count is not None and failures > self.failure_count:
            return True
        return self.failure_percent is not None and failures * 100 > self.failure_percent * size


class RolloutPolicy(BaseModel):
    """Everything tunable about one rollout; the defaults stop at the first failed canary."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    canary_count: int = Field(default=1, ge=0, description="Nodes in the canary wave (the larger of count and %).")
    canary_percent: float | None = Field(default=None, gt=0, le=100, description="Canary size as a share of targets.")
    growth: float = Field(default=2.0, ge=1.0, le=100.0, description="Each wave is this many times the previous one.")
    max_dispatch_per_minute: int = Field(default=1000, ge=1, description="Update commands sent in any 60 s.")
    max_updating_per_site: int = Field(default=1, ge=1, description="K: nodes of one site updating at once.")
    site_limits: dict[str, int] = Field(default_factory=dict, description="K per site, overriding the default.")
    maintenance_windows: dict[str, MaintenanceWindow] = Field(
        default_factory=dict, description="Per site: updates start only inside this daily window."
    )
    canary: WaveRules = Field(default_factory=lambda: WaveRules(success_percent=100.0, failure_count=0))
    waves: WaveRules = Field(
        default_factory=lambda: WaveRules(success_percent=95.0, failure_count=None, failure_percent=1.0)
    )
    step_timeout_s: float = Field(default=900.0, gt=0, description="A node with no report for this long times out.")
    rollout_timeout_s: float = Field(default=3 * 86400.0, gt=0, description="The whole rollout aborts after this.")
    max_retries: int = Field(default=2, ge=0, le=10, description="Re-dispatches per node after failures or timeouts.")
    retry_delay_s: float = Field(default=60.0, ge=0)
    retry_reasons: frozenset[str] = Field(
        default=frozenset({OtaReason.DOWNLOAD_FAILED.value, OtaReason.BUSY.value}),
        description="Failure reasons that are retried (the agent already resumes a download a few times itself).",
    )
    retry_timeouts: bool = Field(default=True, description="Retry a node that timed out.")
    defer_retry_s: float = Field(
        default=60.0, ge=0, description="A node taken back when it went on into a full site waits this long."
    )

    @model_validator(mode="after")
    def _positive_site_limits(self) -> Self:
        bad = {site: k for site, k in self.site_limits.items() if k < 1}
        if bad:
            raise ValueError(f"site_limits must be at least 1 (a site with 0 would never update): {bad}")
        return self

    def site_limit(self, site: str) -> int:
        """K for ``site``."""
        return self.site_limits.get(site, self.max_updating_per_site)

    def rules_for(self, wave: int) -> WaveRules:
        """Thresholds of wave ``wave`` (0 is the canary)."""
        return self.canary if wave == 0 else self.waves

    def wave_sizes(self, total: int) -> list[int]:
        """Split ``total`` targets into a canary and exponentially growing waves (the last one takes the rest)."""
        canary = self.canary_count
        if self.canary_percent is not None:
            canary = max(canary, math.ceil(self.canary_percent * total / 100 - 1e-9))
        sizes: list[int] = []
        size, remaining = min(max(canary, 1), total), total
        while remaining > 0:
            take = min(size, remaining)
            sizes.append(take)
            remaining -= take
            size = max(size + 1 if self.growth > 1 else size, math.ceil(size * self.growth - 1e-9))
        return sizes
