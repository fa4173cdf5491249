"""The locker's devices, built from its board profile through gpiozero.

Door switches are ``DigitalInputDevice`` inputs with a pull-up: active while the switch is closed, i.e. while the
door is closed. (``Button`` would add a hold-timer thread per door, which 500 simulated nodes cannot afford, and
doors need no hold events.) Lock relays are ``DigitalOutputDevice`` outputs (on = unlocked). The pin factory comes
from the profile: gpiozero's default on a Pi, a fresh ``MockFactory`` per board for tests and the simulator.
"""

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from gpiozero import (
    MCP3008,
    BadPinFactory,
    CallbackSetToNone,
    Device,
    DigitalInputDevice,
    DigitalOutputDevice,
    Factory,
    PinFactoryFallback,
)
from gpiozero.pins.mock import MockFactory

from node_agent.board import BoardProfile, CompartmentPins, Mcp3xxxBattery, W1Temperature
from schemas import CompartmentSize, PowerSource

DoorCallback = Callable[[str, bool], None]
"""Called with (compartment id, door is open) on every door switch edge, from gpiozero's thread."""


class HardwareError(RuntimeError):
    """A device that is missing, miswired or unreadable."""


@dataclass(frozen=True)
class BatteryReading:
    """One battery measurement."""

    soc_pct: float
    voltage_v: float
    charging: bool
    power_source: PowerSource
    cycle_count: int


class BatteryGauge(Protocol):
    """Anything that can read the battery."""

    def read(self) -> BatteryReading:
        """Measure now."""
        ...


class TemperatureSensor(Protocol):
    """Anything that can read the enclosure temperature."""

    def read_c(self) -> float:
        """Degrees Celsius now."""
        ...


class Compartment:
    """One compartment's door switch and lock relay."""

    def __init__(self, pins: CompartmentPins, relay_active_high: bool, factory: Factory) -> None:
        self.id = pins.id
        self.size: CompartmentSize = pins.size
        self.door = DigitalInputDevice(pins.door_pin, pull_up=True, pin_factory=factory)
        self.relay = DigitalOutputDevice(
            pins.relay_pin, active_high=relay_active_high, initial_value=False, pin_factory=factory
        )

    def door_is_open(self) -> bool:
        """True while the door switch is open (input inactive)."""
        return not self.door.is_active

    def relay_on(self) -> None:
        """Energise the relay: unlock."""
        self.relay.on()

    def relay_off(self) -> None:
        """Release the relay: lock."""
        self.relay.off()

    def relay_is_on(self) -> bool:
        """True while the relay is energised."""
        return bool(self.relay.value)

    def close(self) -> None:
        """Release the relay and free both pins (door callbacks are detached first)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CallbackSetToNone)  # detaching on purpose
            self.door.when_activated = None
            self.door.when_deactivated = None
        self.relay.off()
        self.relay.close()
        self.door.close()


def soc_from_voltage(volts: float, empty_v: float, full_v: float) -> float:
    """State of charge (%) on a linear curve between ``empty_v`` and ``full_v``, clamped to 0..100."""
    return max(0.0, min(100.0, 100 * (volts - empty_v) / (full_v - empty_v)))


class Mcp3xxxGauge:
    """Battery voltage through an MCP3008 channel; shore power from an optional charger-present input."""

    def __init__(self, config: Mcp3xxxBattery, factory: Factory) -> None:
        self.config = config
        self.adc = MCP3008(channel=config.channel, pin_factory=factory)
        self.charger = (
            DigitalInputDevice(config.charger_pin, pin_factory=factory) if config.charger_pin is not None else None
        )

    def read(self) -> BatteryReading:
        """Convert the ADC reading to volts and state of charge."""
        volts = float(self.adc.value) * self.config.vref_v * self.config.divider
        soc = soc_from_voltage(volts, self.config.empty_v, self.config.full_v)
        shore = bool(self.charger.value) if self.charger is not None else False
        return BatteryReading(
            soc_pct=round(soc, 1),
            voltage_v=round(volts, 3),
            charging=shore and soc < 100,
            power_source=PowerSource.SHORE if shore else PowerSource.BATTERY,
            cycle_count=0,
        )

    def close(self) -> None:
        """Free the ADC and the charger input."""
        self.adc.close()
        if self.charger is not None:
            self.charger.close()


class W1Thermometer:
    """A DS18B20 read through its sysfs file (millidegrees Celsius as text)."""

    def __init__(self, config: W1Temperature) -> None:
        self.path: Path = config.path

    def read_c(self) -> float:
        """Degrees Celsius; raises :class:`HardwareError` when the sensor is missing or garbled."""
        try:
            return int(self.path.read_text().strip()) / 1000
        except (OSError, ValueError) as exc:
            raise HardwareError(
                f"temperature sensor {self.path} unreadable ({exc}): check the 1-wire wiring and dtoverlay=w1-gpio"
            ) from exc


class Hardware:
    """All devices of one locker."""

    def __init__(
        self,
        profile: BoardProfile,
        pin_factory: Factory | None = None,
        battery: BatteryGauge | None = None,
        temperature: TemperatureSensor | None = None,
    ) -> None:
        if temperature is None:
            if not isinstance(profile.temperature, W1Temperature):
                raise HardwareError("a simulated temperature needs a model: use node_agent.sim.SimulatedBoard")
            temperature = W1Thermometer(profile.temperature)
        self.profile = profile
        self.pin_factory: Any = pin_factory or _factory(profile)
        gauge_closers: list[Callable[[], None]] = []
        if battery is None:
            if not isinstance(profile.battery, Mcp3xxxBattery):  # refused before any pin is claimed
                raise HardwareError("a simulated battery needs a model: run it through node_agent.sim.SimulatedBoard")
            gauge = Mcp3xxxGauge(profile.battery, self.pin_factory)
            gauge_closers.append(gauge.close)
            battery = gauge
        self.battery: BatteryGauge = battery
        self.temperature: TemperatureSensor = temperature
        self.compartments = {
            pins.id: Compartment(pins, profile.relay_active_high, self.pin_factory) for pins in profile.compartments
        }
        self._closers = [c.close for c in self.compartments.values()] + gauge_closers

    def on_door_change(self, callback: DoorCallback) -> None:
        """Call ``callback(compartment_id, is_open)`` on every door switch edge."""
        for compartment in self.compartments.values():
            cid = compartment.id
            compartment.door.when_activated = lambda cid=cid: callback(cid, False)
            compartment.door.when_deactivated = lambda cid=cid: callback(cid, True)

    def close(self) -> None:
        """Release every relay and free every pin."""
        for close in self._closers:
            close()


def _factory(profile: BoardProfile) -> Factory:
    """A fresh MockFactory per board (so many simulated boards share a process), else gpiozero's default.

    Raises :class:`HardwareError` in one line, with why each pin library was passed over, when none is usable.
    """
    if profile.pin_factory == "mock":
        return MockFactory()
    with warnings.catch_warnings(record=True) as passed_over:
        warnings.simplefilter("always", PinFactoryFallback)
        try:
            Device.ensure_pin_factory()
        except BadPinFactory as exc:
            reasons = "; ".join(
                str(w.message).removeprefix("Falling back from ")
                for w in passed_over
                if issubclass(w.category, PinFactoryFallback)
            )
            raise HardwareError(
                f'no GPIO pin library is usable for pin_factory = "default" ({reasons or exc}) action=on a Raspberry '
                "Pi install the agent extra, which brings lgpio (pip install 'lockerfleet[agent]'), and run as a "
                'member of the gpio group; off a Pi use a profile with pin_factory = "mock" '
                "(node_agent/profiles/sim-locker-8.toml)"
            ) from None
    return Device.pin_factory
