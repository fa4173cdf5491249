"""The board profile: which pins and sensors a locker has, read from a TOML file.

A profile names the pin factory (``default`` on a Pi, ``mock`` for gpiozero's MockFactory), each compartment's door
switch and lock relay pins, the battery gauge and the temperature source.
"""

import tomllib
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Literal, Self

from gpiozero.pins.pi import PiBoardInfo
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from schemas import CompartmentSize, PowerSource
from schemas.types import CompartmentId, ShortText

PinSpec = int | str
"""A GPIO pin as gpiozero accepts it: ``17``, ``"GPIO17"``, ``"BOARD11"``."""

_HEADER = PiBoardInfo.from_revision(0xC03111)  # a Pi 4B; every Pi since the B+ has this 40-pin header
SPI0_PINS = ("GPIO8", "GPIO9", "GPIO10", "GPIO11")
"""CE0, MISO, MOSI, SCLK: taken by gpiozero's MCP3008 on hardware SPI port 0, device 0."""


def gpio_name(spec: PinSpec) -> str:
    """The canonical name (``"GPIO17"``) of a pin spec, so aliases compare equal; refuses non-GPIO pins."""
    for _header, info in _HEADER.find_pin(spec):
        if "gpio" in info.interfaces:
            return str(info.name)
    raise ValueError(f"pin {spec!r} is not a GPIO pin of the 40-pin header")


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CompartmentPins(_Config):
    """One compartment: its size, door switch input and lock relay output."""

    id: CompartmentId
    size: CompartmentSize
    door_pin: PinSpec
    relay_pin: PinSpec


class Mcp3xxxBattery(_Config):
    """Battery voltage through an MCP3008 ADC channel behind a resistor divider."""

    kind: Literal["mcp3008"] = "mcp3008"
    channel: int = Field(ge=0, le=7)
    vref_v: float = Field(default=3.3, gt=0)
    divider: float = Field(gt=0, description="Battery volts per ADC volt.")
    empty_v: float = Field(gt=0)
    full_v: float = Field(gt=0)
    charger_pin: PinSpec | None = Field(default=None, description="Input that is high while shore power is present.")

    @model_validator(mode="after")
    def _range(self) -> Self:
        if self.full_v <= self.empty_v:
            raise ValueError(f"full_v {self.full_v} must be above empty_v {self.empty_v}")
        return self


class SimBattery(_Config):
    """A modelled battery (simulator and bench use)."""

    kind: Literal["sim"] = "sim"
    capacity_wh: float = Field(default=600, gt=0)
    load_w: float = Field(default=6, ge=0)
    charge_w: float = Field(default=60, ge=0)
    power_source: PowerSource = PowerSource.SHORE
    initial_soc_pct: float = Field(default=80, ge=0, le=100)


class W1Temperature(_Config):
    """A DS18B20 on the 1-wire bus: the sysfs file holds millidegrees Celsius."""

    kind: Literal["w1"] = "w1"
    path: Path


class SimTemperature(_Config):
    """A modelled enclosure temperature with a daily cycle."""

    kind: Literal["sim"] = "sim"
    mean_c: float = 20.0
    amplitude_c: float = Field(default=6.0, ge=0)
    noise_c: float = Field(default=0.3, ge=0)


BatteryConfig = Annotated[Mcp3xxxBattery | SimBattery, Field(discriminator="kind")]
TemperatureConfig = Annotated[W1Temperature | SimTemperature, Field(discriminator="kind")]


class BoardProfile(_Config):
    """Everything the agent needs to know about the hardware of one locker model."""

    hardware_model: ShortText
    pin_factory: Literal["default", "mock"] = "default"
    relay_active_high: bool = True
    pulse_ms: int = Field(default=500, ge=1, le=10_000, description="How long the relay is energised per open.")
    door_timeout_ms: int = Field(default=3000, ge=1, le=60_000, description="How long to wait for the switch.")
    compartments: list[CompartmentPins] = Field(min_length=1, max_length=64)
    battery: BatteryConfig
    temperature: TemperatureConfig

    @model_validator(mode="after")
    def _unique(self) -> Self:
        ids = [c.id for c in self.compartments]
        if duplicated := sorted({i for i in ids if ids.count(i) > 1}):
            raise ValueError(f"compartment ids must be unique; repeated: {', '.join(duplicated)}")
        users: dict[str, list[str]] = {}
        for c in self.compartments:
            users.setdefault(gpio_name(c.door_pin), []).append(f"{c.id} door_pin")
            users.setdefault(gpio_name(c.relay_pin), []).append(f"{c.id} relay_pin")
        if isinstance(self.battery, Mcp3xxxBattery):
            for name in SPI0_PINS:
                users.setdefault(name, []).append("battery SPI")
            if self.battery.charger_pin is not None:
                users.setdefault(gpio_name(self.battery.charger_pin), []).append("battery charger_pin")
        if clashes := [f"{name} ({', '.join(u)})" for name, u in users.items() if len(u) > 1]:
            raise ValueError(f"each pin may be used once; repeated: {'; '.join(clashes)}")
        return self

    @classmethod
    def from_toml(cls, path: Path) -> "BoardProfile":
        """Load and validate a profile; errors name the file."""
        try:
            return cls.model_validate(tomllib.loads(path.read_text()))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ValueError(f"board profile {path}: {exc}") from exc
        except ValidationError as exc:
            raise ValueError(f"board profile {path} is invalid:\n{exc}") from exc


def shipped_profile(name: str) -> Path:
    """Path of a profile shipped in ``node_agent/profiles``."""
    return Path(str(files("node_agent") / "profiles" / f"{name}.toml"))


def default_sim_profile() -> BoardProfile:
    """The shipped simulated 8-compartment locker."""
    return BoardProfile.from_toml(shipped_profile("sim-locker-8"))
