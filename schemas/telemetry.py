"""Periodic telemetry: battery, enclosure temperature and every compartment's door and lock."""

from enum import StrEnum

from pydantic import Field

from schemas.envelope import ContractModel, NodeEnvelope
from schemas.types import CompartmentId


class PowerSource(StrEnum):
    """Where the node draws power from right now."""

    SHORE = "shore"
    BATTERY = "battery"
    PORTABLE = "portable"


class DoorState(StrEnum):
    """Door switch reading."""

    OPEN = "open"
    CLOSED = "closed"


class LockState(StrEnum):
    """Lock relay state: ``unlocked`` while the relay is energised."""

    LOCKED = "locked"
    UNLOCKED = "unlocked"


class Battery(ContractModel):
    """Battery pack reading."""

    soc_pct: float = Field(ge=0, le=100, description="State of charge, percent.")
    voltage_v: float = Field(ge=0, le=100)
    charging: bool
    power_source: PowerSource
    cycle_count: int = Field(ge=0, lt=1_000_000)


class CompartmentReading(ContractModel):
    """Door and lock of one compartment."""

    id: CompartmentId
    door: DoorState
    lock: LockState


class Telemetry(NodeEnvelope):
    """One telemetry sample of a node."""

    battery: Battery
    enclosure_temp_c: float = Field(ge=-60, le=125)
    compartments: list[CompartmentReading] = Field(max_length=256)
    outbox_dropped: int = Field(
        default=0,
        ge=0,
        lt=2**63,
        description="Telemetry samples dropped from the full offline outbox since this boot (a total).",
    )
