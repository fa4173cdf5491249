"""Contract messages to alert inputs, and inputs to the monitor: the pure half of the controller's alert adapter.

:func:`inputs_of` runs on the ingest thread (a few attribute reads per message); :func:`apply` runs on the alert
thread. A birth says where the node stands (its site) and that it is online; a last will that it is offline. The
fleet open breaker's state comes from the controller's open path (:class:`~controller.alerts.inputs.BreakerState`).
"""

from collections.abc import Callable, Sequence
from typing import TypeAlias

import schemas
from controller.alerts.inputs import (
    BreakerState,
    CompartmentReading,
    DoorEdge,
    DoorOutcome,
    KeypadLockout,
    Liveness,
    NodeInfo,
    PowerSource,
    TelemetrySample,
)
from controller.alerts.model import Notification
from controller.alerts.monitor import AlertMonitor
from schemas import (
    CommandResult,
    DoorEvent,
    DoorState,
    KeypadEvent,
    LockState,
    Message,
    NoCause,
    StatusBirth,
    StatusDeath,
)
from schemas.frames import CompartmentReadingFrame
from schemas.ingest_codec import AnyTelemetry, Ingested

AlertInput: TypeAlias = TelemetrySample | DoorEdge | DoorOutcome | KeypadLockout | Liveness | NodeInfo | BreakerState
"""Anything the monitor is fed with."""


def inputs_of(message: Ingested | Message, now: float, in_maintenance: Callable[[str], bool]) -> tuple[AlertInput, ...]:
    """The alert inputs a message carries (none for messages the rules don't read)."""
    if isinstance(message, AnyTelemetry):
        return (telemetry_sample(message, now),)
    if isinstance(message, StatusBirth):
        info = NodeInfo(message.node_id, message.site, in_maintenance(message.node_id))
        return info, Liveness(message.node_id, online=True)
    if isinstance(message, StatusDeath):
        return (Liveness(message.node_id, online=False),)
    event = _event_input(message)
    return () if event is None else (event,)


def _event_input(message: Message) -> DoorEdge | DoorOutcome | KeypadLockout | None:
    if isinstance(message, DoorEvent):
        opened = message.action == "opened"
        uncommanded = opened and isinstance(message.cause, NoCause)
        return DoorEdge(message.node_id, message.compartment, message.ts.timestamp(), opened, uncommanded)
    if isinstance(message, CommandResult) and message.outcome is not None:
        outcome = message.outcome
        at = message.ts.timestamp()
        return DoorOutcome(message.node_id, outcome.compartment, at, outcome.result.value, outcome.switch_latency_ms)
    if isinstance(message, KeypadEvent):
        locked_until = message.locked_until.timestamp()
        return KeypadLockout(message.node_id, message.ts.timestamp(), locked_until, message.wrong_attempts)
    return None


def telemetry_sample(t: AnyTelemetry, received_at: float, site_id: str | None = None) -> TelemetrySample:
    """The rules' view of one telemetry message (fields given by position: keywords cost a third more)."""
    b = t.battery
    return TelemetrySample(
        t.node_id,
        t.ts.timestamp(),
        received_at,
        b.soc_pct,
        b.charging,
        _POWER_SOURCES[b.power_source],
        b.cycle_count,
        t.enclosure_temp_c,
        t.outbox_dropped,
        t.replayed,
        site_id,
        _readings(t.compartments),
    )


_POWER_SOURCES: dict[str, PowerSource] = {"shore": "shore", "battery": "battery", "portable": "portable"}
"""A power source's value, looked up by the contract's enum member (a ``str``; ``.value`` runs Python code)."""

_READINGS: dict[tuple[schemas.CompartmentReading | CompartmentReadingFrame, ...], tuple[CompartmentReading, ...]] = {}
"""The rules' readings by the compartments as received (frozen, so hashable by their id, door and lock): a node
sends the same ones sample after sample, and building them anew was a third of an ingested message's CPU. Bounded:
emptied when it grows past :data:`_READINGS_MAX`."""
_READINGS_MAX = 4096


def _readings(
    compartments: Sequence[schemas.CompartmentReading | CompartmentReadingFrame],
) -> tuple[CompartmentReading, ...]:
    key = tuple(compartments)
    readings = _READINGS.get(key)
    if readings is None:
        if len(_READINGS) >= _READINGS_MAX:
            _READINGS.clear()
        readings = _READINGS[key] = tuple(
            CompartmentReading(c.id, c.door is DoorState.OPEN, c.lock is LockState.LOCKED) for c in key
        )
    return readings


def apply(monitor: AlertMonitor, item: AlertInput, now: float) -> list[Notification]:
    """Feed one input to the monitor; returns what to announce."""
    notes: list[Notification] = []
    match item:
        case TelemetrySample():
            notes = monitor.on_telemetry(item, now)
        case DoorEdge():
            notes = monitor.on_door_edge(item, now)
        case DoorOutcome():
            notes = monitor.on_door_outcome(item, now)
        case KeypadLockout():
            notes = monitor.on_keypad_lockout(item, now)
        case Liveness():
            notes = monitor.on_liveness(item, now)
        case BreakerState():
            notes = monitor.set_breaker(item, now)
        case NodeInfo():
            monitor.set_node(item, now)
    return notes
