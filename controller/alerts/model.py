"""Alert data: identity, severity, lifecycle record, acknowledgement, silences and the notifications the engine emits.

Plain dataclasses; timestamps are epoch seconds (floats) passed in by the caller. Every persisted type has
``to_dict``/``from_dict`` producing JSON-ready values, so the controller store can keep the engine's state.
"""

from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from fnmatch import fnmatchcase
from typing import Any, Self

Detail = str | int | float | bool | None | list[str]
"""A value in an alert's ``details``: JSON-ready scalars, or a list of names (e.g. the nodes of a site alert)."""


class Severity(StrEnum):
    """How urgent an alert is; ordered ``info < warning < critical``."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """0, 1, 2: compare severities with this."""
        return _RANKS[self]


_RANKS = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


class RuleName(StrEnum):
    """Every rule the alert rules emit, by family; the ``rule`` part of an alert id."""

    BATTERY_SWAP = "battery_swap"
    BATTERY_REPLACE = "battery_replace"
    TEMP_OUT_OF_BAND = "temp_out_of_band"
    TEMP_BASELINE_DRIFT = "temp_baseline_drift"
    TEMP_PEER_OUTLIER = "temp_peer_outlier"
    TEMP_SLOW_DRIFT = "temp_slow_drift"
    COMPARTMENT_JAMMED = "compartment_jammed"
    DOOR_HELD_OPEN = "door_held_open"
    LOCK_FAULT = "lock_fault"
    DOOR_SWITCH_WEAR = "door_switch_wear"
    UNCOMMANDED_OPEN = "uncommanded_open"
    KEYPAD_LOCKOUT = "keypad_lockout"
    OPEN_BREAKER_TRIPPED = "open_breaker_tripped"
    NODE_OFFLINE = "node_offline"
    NODE_STALE = "node_stale"
    OUTBOX_DROPPING = "outbox_dropping"
    CLOCK_SKEW = "clock_skew"
    SITE_UPLINK_LOST = "site_uplink_lost"


class AlertState(StrEnum):
    """Lifecycle of one alert: ``pending`` → ``firing`` → ``resolved``; ``inactive`` when pending cleared first."""

    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"
    INACTIVE = "inactive"


class Transition(StrEnum):
    """What a notification announces about an alert's episode."""

    RAISED = "raised"
    ESCALATED = "escalated"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


def alert_id(rule: str, node_id: str | None = None, compartment: str | None = None, site_id: str | None = None) -> str:
    """The stable id of an alert: ``rule:node``, ``rule:node:compartment``, ``rule:@site`` or ``rule:*`` (fleet).

    Node, compartment and site ids never hold ``:``, ``@`` or ``*`` (schemas.types), so the id is unambiguous and
    safe in a URL path segment.
    """
    if node_id is not None:
        return f"{rule}:{node_id}" if compartment is None else f"{rule}:{node_id}:{compartment}"
    return f"{rule}:@{site_id}" if site_id is not None else f"{rule}:*"


@dataclass(frozen=True, slots=True)
class Observation:
    """A rule's verdict on one alert at one evaluation: the raise condition holds, or the clear condition holds.

    Rules emit nothing when neither holds (inside the hysteresis band) or when they cannot tell (too little data,
    node offline): the alert then keeps its state.
    """

    rule: str
    raising: bool
    node_id: str | None = None
    compartment: str | None = None
    site_id: str | None = None
    severity: Severity = Severity.WARNING
    summary: str = ""
    for_s: float = 0.0
    """How long the raise condition must hold before a pending alert fires."""
    keep_firing_for_s: float = 0.0
    """How long the clear condition must hold before a firing alert resolves."""
    value: float | None = None
    details: dict[str, Detail] = field(default_factory=dict)
    occurrences: int = 0
    """Discrete events behind this verdict (jams, lockouts...), added to the alert's count."""

    @property
    def id(self) -> str:
        """The id of the alert this verdict is about."""
        return alert_id(self.rule, self.node_id, self.compartment, self.site_id)


@dataclass(slots=True)
class AlertRecord:
    """The engine's state of one alert id: its current (or last) episode."""

    id: str
    rule: str
    node_id: str | None
    compartment: str | None
    site_id: str | None
    severity: Severity
    state: AlertState
    episode: int
    """Grows by one each time the alert starts pending again; notifications are idempotent per (id, episode)."""
    pending_since: float
    firing_since: float | None = None
    resolved_at: float | None = None
    clear_since: float | None = None
    last_raised_at: float | None = None
    raising: bool = True
    count: int = 1
    """Occurrences in this episode (discrete events, or raise edges of a condition)."""
    summary: str = ""
    value: float | None = None
    details: dict[str, Detail] = field(default_factory=dict)
    for_s: float = 0.0
    keep_firing_for_s: float = 0.0
    notified_severity: Severity | None = None
    """Severity last announced for this episode; ``None`` while the raise is not yet announced (e.g. silenced)."""
    acked_by: str | None = None
    acked_at: float | None = None

    @property
    def open(self) -> bool:
        """Pending or firing."""
        return self.state in (AlertState.PENDING, AlertState.FIRING)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Inverse of :meth:`to_dict`."""
        values = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        values["severity"] = Severity(values["severity"])
        values["state"] = AlertState(values["state"])
        if values.get("notified_severity") is not None:
            values["notified_severity"] = Severity(values["notified_severity"])
        values["details"] = dict(values.get("details") or {})
        return cls(**values)


@dataclass(frozen=True, slots=True)
class Silence:
    """Mutes notifications of the alerts it matches between ``starts_at`` and ``ends_at``.

    Matchers are shell-style patterns (``fnmatch``: ``sim-00*``); ``None`` matches anything. At least one is set.
    A silenced alert still changes state; its raise is announced when the silence ends if it is still firing.
    """

    id: str
    created_by: str
    comment: str
    starts_at: float
    ends_at: float
    rule: str | None = None
    node_id: str | None = None
    site_id: str | None = None
    compartment: str | None = None

    def __post_init__(self) -> None:
        if self.rule is None and self.node_id is None and self.site_id is None and self.compartment is None:
            raise ValueError(f"silence {self.id}: set at least one matcher (rule, node_id, site_id or compartment)")
        if self.ends_at <= self.starts_at:
            raise ValueError(f"silence {self.id}: ends_at must be after starts_at")

    def active(self, now: float) -> bool:
        """True between start (inclusive) and end (exclusive)."""
        return self.starts_at <= now < self.ends_at

    def matches(self, record: AlertRecord) -> bool:
        """True when every set matcher matches the alert's field."""
        pairs = (
            (self.rule, record.rule),
            (self.node_id, record.node_id),
            (self.site_id, record.site_id),
            (self.compartment, record.compartment),
        )
        return all(p is None or (v is not None and fnmatchcase(v, p)) for p, v in pairs)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Inverse of :meth:`to_dict`."""
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


@dataclass(frozen=True, slots=True)
class Notification:
    """One announcement to deliver (webhook, MQTT, log). Emitted once per episode transition.

    ``delivery_key`` is unique per announcement: persist it as delivered to make delivery idempotent.
    """

    alert_id: str
    episode: int
    transition: Transition
    at: float
    rule: str
    severity: Severity
    node_id: str | None
    compartment: str | None
    site_id: str | None
    summary: str
    count: int
    value: float | None = None
    details: dict[str, Detail] = field(default_factory=dict)
    acked_by: str | None = None

    @property
    def delivery_key(self) -> str:
        """``id#episode:transition`` (escalations add the severity): the idempotency key of this announcement."""
        key = f"{self.alert_id}#{self.episode}:{self.transition}"
        return f"{key}:{self.severity}" if self.transition is Transition.ESCALATED else key

    @classmethod
    def of(cls, record: AlertRecord, transition: Transition, at: float) -> Self:
        """The announcement of ``transition`` for the record as it is now."""
        return cls(
            alert_id=record.id,
            episode=record.episode,
            transition=transition,
            at=at,
            rule=record.rule,
            severity=record.severity,
            node_id=record.node_id,
            compartment=record.compartment,
            site_id=record.site_id,
            summary=record.summary,
            count=record.count,
            value=record.value,
            details=dict(record.details),
            acked_by=record.acked_by,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (with the delivery key)."""
        return {**asdict(self), "delivery_key": self.delivery_key}
