"""Pure models of a locker's battery and enclosure temperature, deterministic for a given ``random.Random``."""

import math
import random
from collections.abc import Callable
from datetime import UTC, datetime

from node_agent.hardware import BatteryReading
from schemas import PowerSource

EMPTY_V = 11.8
FULL_V = 13.4
PEAK_HOUR_UTC = 15.0


class BatteryModel:
    """A battery that drains at ``load_w`` and, on shore power, charges at ``charge_w``; implements BatteryGauge."""

    def __init__(
        self,
        capacity_wh: float,
        load_w: float,
        charge_w: float,
        power_source: PowerSource,
        soc_pct: float,
        cycle_count: int = 0,
    ) -> None:
        self.capacity_wh = capacity_wh
        self.nominal_capacity_wh = capacity_wh
        self.load_w = load_w
        self.charge_w = charge_w
        self.power_source = power_source
        self.soc_pct = soc_pct
        self.cycle_count = cycle_count
        self._discharged_wh = 0.0

    def set_power_source(self, source: PowerSource) -> None:
        """Switch supply, e.g. shore power lost or a portable pack plugged in."""
        self.power_source = source

    def swap(self, soc_pct: float = 100.0) -> None:
        """A fresh pack: nominal capacity, charged to ``soc_pct``, no cycles."""
        self.capacity_wh = self.nominal_capacity_wh
        self.soc_pct = soc_pct
        self.cycle_count = 0
        self._discharged_wh = 0.0

    def step(self, dt_s: float) -> None:
        """Advance the charge by ``dt_s`` seconds; a full capacity discharged counts one cycle."""
        hours = dt_s / 3600
        net_w = (self.charge_w if self.power_source is PowerSource.SHORE else 0.0) - self.load_w
        delta_wh = net_w * hours
        if delta_wh < 0:
            delta_wh = max(delta_wh, -self.capacity_wh * self.soc_pct / 100)
            self._discharged_wh -= delta_wh
            while self._discharged_wh >= self.capacity_wh:
                self._discharged_wh -= self.capacity_wh
                self.cycle_count += 1
        self.soc_pct = max(0.0, min(100.0, self.soc_pct + 100 * delta_wh / self.capacity_wh))

    def read(self) -> BatteryReading:
        """The battery as a gauge would report it."""
        shore = self.power_source is PowerSource.SHORE
        return BatteryReading(
            soc_pct=round(self.soc_pct, 2),
            voltage_v=round(EMPTY_V + (FULL_V - EMPTY_V) * self.soc_pct / 100, 3),
            charging=shore and self.soc_pct < 100 and self.charge_w > self.load_w,
            power_source=self.power_source,
            cycle_count=self.cycle_count,
        )


def _utc_now() -> datetime:
    return datetime.now(UTC)


class ThermalModel:
    """Enclosure temperature: a daily sine peaking mid-afternoon UTC plus noise and ``offset_c`` (a heater fault);
    implements TemperatureSensor."""

    def __init__(
        self,
        mean_c: float,
        amplitude_c: float,
        noise_c: float,
        rng: random.Random,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.mean_c = mean_c
        self.amplitude_c = amplitude_c
        self.noise_c = noise_c
        self.offset_c = 0.0
        self._rng = rng
        self._clock = clock

    def read_c(self) -> float:
        """Degrees Celsius at the clock's current time."""
        now = self._clock()
        hour = now.hour + now.minute / 60 + now.second / 3600
        daily = math.cos(2 * math.pi * (hour - PEAK_HOUR_UTC) / 24)
        return round(self.mean_c + self.offset_c + self.amplitude_c * daily + self._rng.gauss(0, self.noise_c), 2)
