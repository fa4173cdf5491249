"""What the rules consume: small frozen records the controller adapter builds from the contract's messages.

Times are epoch seconds. ``ts`` is the device's clock (from the message), ``received_at`` the controller's.
"""

from dataclasses import dataclass
from typing import Literal, NamedTuple

PowerSource = Literal["shore", "battery", "portable"]
OpenResult = Literal["opened", "already_open", "jammed", "failed"]
"""A door command's outcome (``schemas.result.DoorResult``), or ``failed``: the node reported status ``failed``."""


@dataclass(frozen=True, slots=True)
class CompartmentReading:
    """One compartment in a telemetry sample (``schemas.telemetry.CompartmentReading``)."""

    compartment: str
    door_open: bool
    locked: bool


class TelemetrySample(NamedTuple):
    """One telemetry message (``schemas.telemetry.Telemetry``). A named tuple: one is built per ingested message,
    three times faster than a frozen dataclass of as many fields."""

    node_id: str
    ts: float
    received_at: float
    soc_pct: float
    charging: bool
    power_source: PowerSource
    cycle_count: int
    temp_c: float
    outbox_dropped: int = 0
    replayed: bool = False
    """Delivered late from the node's outbox: its ``ts`` is old on purpose (no clock-skew verdict)."""
    site_id: str | None = None
    """Set when the adapter knows it; updates the node's site."""
    compartments: tuple[CompartmentReading, ...] = ()


@dataclass(frozen=True, slots=True)
class DoorEdge:
    """A door switch edge (``schemas.event.DoorEvent``)."""

    node_id: str
    compartment: str
    ts: float
    opened: bool
    uncommanded: bool = False
    """An opening no command and no code explains (``DoorEvent.uncommanded_open``)."""


@dataclass(frozen=True, slots=True)
class DoorOutcome:
    """The result of a door command (``schemas.result.CommandResult`` with its ``DoorOutcome``)."""

    node_id: str
    compartment: str
    ts: float
    result: OpenResult
    switch_latency_ms: int | None = None


@dataclass(frozen=True, slots=True)
class KeypadLockout:
    """The keypad locked itself after wrong codes (``schemas.event.KeypadEvent``)."""

    node_id: str
    ts: float
    locked_until: float
    wrong_attempts: int


@dataclass(frozen=True, slots=True)
class Liveness:
    """The fleet registry's verdict on a node from its status birth / last will."""

    node_id: str
    online: bool


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """What the controller knows of a node outside its messages."""

    node_id: str
    site_id: str | None = None
    maintenance: bool = False
    """Under maintenance: the rules listed in ``suppression.maintenance_rules`` raise nothing."""
    last_seen: float | None = None
    """When any message of it was last received (from the store); ``None``: count from registration."""


@dataclass(frozen=True, slots=True)
class BreakerState:
    """The fleet open breaker (controller side): tripped when opens fail or surge fleet-wide."""

    tripped: bool
    detail: str = ""
    until: float | None = None
    """When a tripped breaker counts as reset by itself (its limit refilled); ``None``: until a state says so."""
