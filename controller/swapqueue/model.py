"""The swap queue's types: alerts coming in, work orders and their states, telemetry samples, events going out.

Times are POSIX seconds (floats) passed in by the caller; nothing here reads a clock.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import NamedTuple


class SwapQueueError(Exception):
    """Base of every error the swap queue raises on bad input; the message names the input and what to do."""


class UnknownWorkOrderError(SwapQueueError, KeyError):
    """No work order has this id."""


class WorkOrderClosedError(SwapQueueError):
    """The work order is verified or cancelled; a technician action on it changes nothing."""


class NotAssignedError(SwapQueueError):
    """A technician acted on a work order assigned to someone else (or to no one)."""


class ActionOrderError(SwapQueueError):
    """A technician action came out of order (for example ``done`` before the order was assigned)."""


class Severity(StrEnum):
    """Alert severity as the alert engine grades it."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class ProblemKind(StrEnum):
    """What the technician goes to fix; it decides what counts as proof of the fix."""

    BATTERY_SWAP = "battery_swap"
    """Pack running empty: proof is a state-of-charge jump, a cycle-count reset or a new pack id."""
    PACK_REPLACEMENT = "pack_replacement"
    """Pack worn out (cycle count past its life): proof is a cycle-count reset or a new pack id."""
    FIELD_REPAIR = "field_repair"
    """Mechanical or thermal fault: proof is the alert resolving after a technician arrived."""


DEFAULT_RULE_KINDS: Mapping[str, ProblemKind] = MappingProxyType(
    {
        "battery_swap": ProblemKind.BATTERY_SWAP,
        "battery_replace": ProblemKind.PACK_REPLACEMENT,
        "compartment_jammed": ProblemKind.FIELD_REPAIR,
        "lock_fault": ProblemKind.FIELD_REPAIR,
        "door_switch_wear": ProblemKind.FIELD_REPAIR,
        "temp_out_of_band": ProblemKind.FIELD_REPAIR,
    }
)
"""Which alert rules send a technician, and for what (keys are ``controller.alerts.RuleName`` values). Alerts of
other rules create no work order."""


class OrderState(StrEnum):
    """Life of a work order. ``verified`` and ``cancelled`` are final."""

    OPEN = "open"
    ASSIGNED = "assigned"
    ARRIVED = "arrived"
    AWAITING_VERIFICATION = "awaiting_verification"
    """The technician tapped done; the controller has not yet seen the fix hold in telemetry."""
    VERIFIED = "verified"
    CANCELLED = "cancelled"


FINAL_STATES = frozenset({OrderState.VERIFIED, OrderState.CANCELLED})


class CancelReason(StrEnum):
    """Why a work order was cancelled."""

    RESOLVED_WITHOUT_ACTION = "resolved_without_action"
    """Every alert behind it resolved before a technician arrived (noise, or the node recovered by itself)."""
    OPERATOR = "operator"


class Evidence(StrEnum):
    """What telemetry showed that the fix happened."""

    SOC_JUMP = "soc_jump"
    CYCLE_RESET = "cycle_reset"
    PACK_CHANGED = "pack_changed"
    ALERT_RESOLVED = "alert_resolved"


@dataclass(frozen=True, slots=True)
class AlertNotice:
    """An alert that started firing, as the swap queue needs it (built by the caller from the alert engine's alert).

    Feed every firing alert of a node: rules in ``VerifyPolicy.rule_kinds`` create or refresh work orders, and any
    critical alert counts against the node's health while a fix is being verified.
    """

    alert_id: str
    rule: str
    node_id: str
    site_id: str
    severity: Severity
    hours_to_empty: float | None
    """Forecast time to an empty pack when the alert was raised; None when there is no forecast."""
    created_at: float


class TelemetrySample(NamedTuple):
    """One telemetry reading of a node, reduced to what verification looks at. A named tuple: one is built per
    ingested message, and a frozen dataclass's ``__init__`` cost three times more."""

    node_id: str
    ts: float
    soc_pct: float
    cycle_count: int
    charging: bool
    online: bool = True
    pack_id: str | None = None
    """The pack's serial if the gauge reports one."""


@dataclass(frozen=True, slots=True)
class VerifyPolicy:
    """What the controller must see before it closes a work order."""

    soc_jump_pct: float = 30.0
    """A rise of state of charge of at least this many points between two samples, neither of them charging."""
    healthy_for_s: float = 15 * 60
    """After the proof, the node must stay online with no critical alert for this long (shown by a sample)."""
    rule_kinds: Mapping[str, ProblemKind] = field(default_factory=lambda: DEFAULT_RULE_KINDS)

    def __post_init__(self) -> None:
        if not 0 < self.soc_jump_pct <= 100:
            raise SwapQueueError(f"soc_jump_pct={self.soc_jump_pct}: it must be in (0, 100] percentage points")
        if self.healthy_for_s < 0:
            raise SwapQueueError(f"healthy_for_s={self.healthy_for_s}: it must be ≥ 0 seconds")


@dataclass(frozen=True, slots=True)
class WorkOrder:
    """One job for a technician at one node. At most one open order exists per (node, kind)."""

    order_id: str
    node_id: str
    site_id: str
    kind: ProblemKind
    state: OrderState
    severity: Severity
    hours_to_empty: float | None
    forecast_at: float
    """When ``hours_to_empty`` was forecast: the node is expected empty at ``forecast_at + hours_to_empty·3600``."""
    created_at: float
    updated_at: float
    alert_ids: tuple[str, ...]
    active_alert_ids: frozenset[str]
    occurrences: int = 1
    technician_id: str | None = None
    assigned_at: float | None = None
    arrived_at: float | None = None
    done_at: float | None = None
    evidence: Evidence | None = None
    evidence_at: float | None = None
    healthy_since: float | None = None
    """Start of the current unbroken healthy stretch after the evidence; None while unhealthy or before it."""
    closed_at: float | None = None
    cancel_reason: CancelReason | None = None

    @property
    def is_open(self) -> bool:
        """Not yet verified or cancelled."""
        return self.state not in FINAL_STATES

    @property
    def empty_at(self) -> float | None:
        """The forecast instant the pack runs empty, or None without a forecast."""
        if self.hours_to_empty is None:
            return None
        return self.forecast_at + self.hours_to_empty * 3600.0


class EventKind(StrEnum):
    """What happened to a work order."""

    CREATED = "created"
    UPDATED = "updated"
    """A repeated alert for the same node and kind refreshed an open order."""
    ASSIGNED = "assigned"
    ARRIVED = "arrived"
    DONE = "done"
    FIX_SEEN = "fix_seen"
    """Telemetry showed the fix; the healthy stretch is now being watched."""
    HEALTH_STARTED = "health_started"
    """A healthy stretch began (after the fix, or again after a break)."""
    HEALTH_BROKEN = "health_broken"
    """The node went offline or raised a critical alert during the healthy stretch; it starts again."""
    VERIFIED = "verified"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class Event:
    """A change to a work order; ``order`` is the order after the change (what to store)."""

    kind: EventKind
    order: WorkOrder
    at: float
