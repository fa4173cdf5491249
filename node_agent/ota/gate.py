"""The occupancy gate: may this locker take itself out of service for an update right now? Pure.

An update starts (and later switches and restarts) only when no door is open, no command is in flight, no
reservation expects a courier or a recipient soon, and the battery can carry a restart. Otherwise it is deferred
with the first reason found; the driver asks again later.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from node_agent.hardware import BatteryReading
from node_agent.ledger import Ledger, SlotState
from node_agent.ota.state import Cause
from schemas import PowerSource
from schemas.ota import OtaReason


@dataclass(frozen=True)
class GatePolicy:
    """When a node counts as busy."""

    lookahead: timedelta = timedelta(minutes=15)
    """A held reservation whose deposit window is open or opens within this, or a parcel whose pickup deadline
    falls within this, keeps the node busy."""
    min_battery_pct: float = 40.0
    """Below this state of charge, off shore power, the node does not update."""


@dataclass(frozen=True)
class Occupancy:
    """What the agent knows about its own use right now."""

    open_doors: frozenset[str]
    commands_in_flight: int
    ledger: Ledger
    battery: BatteryReading | None
    """None when the gauge cannot be read."""


def check_gate(occupancy: Occupancy, now: datetime, policy: GatePolicy = GatePolicy()) -> Cause | None:
    """None when an update may proceed now, else the first reason it must wait."""
    if occupancy.open_doors:
        doors = ", ".join(sorted(occupancy.open_doors))
        return Cause(code=OtaReason.DOOR_OPEN, detail=f"door open: {doors}")
    if occupancy.commands_in_flight:
        return Cause(code=OtaReason.COMMAND_IN_FLIGHT, detail=f"{occupancy.commands_in_flight} command(s) in flight")
    expected = _expected_visit(occupancy.ledger, now, now + policy.lookahead)
    if expected is not None:
        return expected
    return _battery(occupancy.battery, policy.min_battery_pct)


def _expected_visit(ledger: Ledger, now: datetime, horizon: datetime) -> Cause | None:
    for compartment, slot in sorted(ledger.slots.items()):
        window = slot.window
        if window is None:
            continue
        if slot.state is SlotState.HELD and window.opens_at < horizon and window.hold_until > now:
            detail = f"{slot.reservation_id} may be deposited in {compartment} until {window.hold_until.isoformat()}"
            return Cause(code=OtaReason.RESERVATION_DUE, detail=detail)
        if slot.state is SlotState.OCCUPIED and now < window.pickup_until <= horizon:
            detail = f"{slot.reservation_id} is due for pickup from {compartment} by {window.pickup_until.isoformat()}"
            return Cause(code=OtaReason.RESERVATION_DUE, detail=detail)
    return None


def _battery(battery: BatteryReading | None, floor_pct: float) -> Cause | None:
    if battery is None:
        return Cause(code=OtaReason.BATTERY_LOW, detail="the battery gauge cannot be read")
    if battery.power_source is PowerSource.SHORE or battery.soc_pct >= floor_pct:
        return None
    detail = f"battery at {battery.soc_pct:.0f} % on {battery.power_source.value} power, floor {floor_pct:.0f} %"
    return Cause(code=OtaReason.BATTERY_LOW, detail=detail)
