"""The simulated board: a real :class:`~node_agent.hardware.Hardware` on a fresh MockFactory, driven by physics."""

import random

from gpiozero.pins.mock import MockFactory

from node_agent.board import BoardProfile, SimBattery, SimTemperature
from node_agent.hardware import Hardware
from node_agent.sim.doors import DoorPhysics, RelayPin, Schedule
from node_agent.sim.physics import BatteryModel, ThermalModel
from schemas import PowerSource

__all__ = ["BatteryModel", "DoorPhysics", "RelayPin", "SimulatedBoard", "ThermalModel"]


def _no_schedule(_delay_s: float, _fn: object) -> None:
    """Doors that never move by themselves (a bench agent): the relay fires, the switch stays."""


class SimulatedBoard:
    """One simulated locker: mock pins, modelled battery and temperature, doors that react to their relays."""

    def __init__(
        self,
        profile: BoardProfile,
        rng: random.Random | None = None,
        schedule: Schedule | None = None,
        jam_share: float = 0.0,
        door_dwell_s: float = 20.0,
        power_source: PowerSource | None = None,
    ) -> None:
        rng = rng or random.Random()
        battery = profile.battery if isinstance(profile.battery, SimBattery) else SimBattery()
        thermal = profile.temperature if isinstance(profile.temperature, SimTemperature) else SimTemperature()
        self.battery = BatteryModel(
            capacity_wh=battery.capacity_wh,
            load_w=battery.load_w,
            charge_w=battery.charge_w,
            power_source=power_source or battery.power_source,
            soc_pct=battery.initial_soc_pct,
        )
        self.thermal = ThermalModel(thermal.mean_c, thermal.amplitude_c, thermal.noise_c, rng)
        factory = MockFactory()
        relays = {c.id: factory.pin(c.relay_pin, pin_class=RelayPin) for c in profile.compartments}
        self.hardware = Hardware(profile, pin_factory=factory, battery=self.battery, temperature=self.thermal)
        self.doors = {
            c.id: DoorPhysics(
                relays[c.id],
                factory.pin(c.door_pin),
                profile.relay_active_high,
                rng,
                schedule or _no_schedule,
                jammed=rng.random() < jam_share,
                dwell_mean_s=door_dwell_s,
            )
            for c in profile.compartments
        }

    def step(self, dt_s: float) -> None:
        """Advance the battery by ``dt_s`` seconds."""
        self.battery.step(dt_s)
