"""The alert monitor: per-node rule state, the rules, the engine — fed with inputs, ticked by a timer.

Pure and clock-injected like the engine: every call takes ``now`` (epoch seconds) and returns the notifications to
deliver. The controller adapter converts contract messages to :mod:`controller.alerts.inputs` records, calls the
``on_*`` methods as messages arrive and :meth:`AlertMonitor.tick` every evaluation period (absence of data is a
condition only the timer sees), and persists :meth:`AlertMonitor.dump` with the notifications it got.

Suppression happens here, by not evaluating a rule (its alert keeps its state): a node in maintenance skips the
``suppression.maintenance_rules``; an offline node is evaluated for ``node_offline`` only; the nodes of a site whose
``site_uplink_lost`` is raising or open skip ``node_offline`` (one site alert, not one per node). Offline raises
happen on ticks only, after the site grouping, so the grouping always sees them first.
"""

from dataclasses import dataclass, field
from typing import Any

from controller.alerts.engine import AlertEngine
from controller.alerts.inputs import (
    BreakerState,
    CompartmentReading,
    DoorEdge,
    DoorOutcome,
    KeypadLockout,
    Liveness,
    NodeInfo,
    TelemetrySample,
)
from controller.alerts.model import Notification, RuleName, Silence, alert_id
from controller.alerts.params import MechanicalParams, RuleSet
from controller.alerts.rules import battery, mechanical, operations, security, thermal
from controller.alerts.rules.base import Emitter
from controller.alerts.rules.battery import BatteryState
from controller.alerts.rules.mechanical import CompartmentState
from controller.alerts.rules.operations import OperationsState
from controller.alerts.rules.security import SecurityState
from controller.alerts.rules.thermal import ThermalState
from controller.alerts.rules_file import RulesConfig

_DERIVED = frozenset(RuleName) - {RuleName.NODE_OFFLINE, RuleName.SITE_UPLINK_LOST, RuleName.OPEN_BREAKER_TRIPPED}
"""Node rules that say nothing about an offline node: its offline alert says it all."""


@dataclass(slots=True)
class NodeState:
    """Everything the rules remember about one node: O(window) per rule."""

    node_id: str
    site_id: str | None
    maintenance: bool
    ops: OperationsState
    thermal: ThermalState
    battery: BatteryState = field(default_factory=BatteryState)
    security: SecurityState = field(default_factory=SecurityState)
    compartments: dict[str, CompartmentState] = field(default_factory=dict)
    readings: tuple[CompartmentReading, ...] | None = None
    """The compartment readings last recorded (each compartment once), while no door edge came since: recording
    them again changes nothing."""
    calm: MechanicalParams | None = None
    """Set when every compartment was :func:`~controller.alerts.rules.mechanical.quiet` under these parameters at
    the last evaluation and no door input or changed reading came since: they still are."""

    def compartment(self, compartment: str) -> CompartmentState:
        """The compartment's state, created on first use."""
        state = self.compartments.get(compartment)
        if state is None:
            state = self.compartments[compartment] = CompartmentState()
        return state


class AlertMonitor:
    """Feeds inputs to the rules and their verdicts to the engine; answers with notifications."""

    def __init__(self, rules: RulesConfig | None = None, engine: AlertEngine | None = None) -> None:
        self.rules = rules if rules is not None else RulesConfig()
        self.engine = engine if engine is not None else AlertEngine()
        self._nodes: dict[str, NodeState] = {}
        self._peers: dict[str, thermal.PeerStats | None] = {}
        self._sites_down: set[str] = set()
        self._breaker: BreakerState | None = None
        self._quiet: dict[tuple[int, bool, bool, bool], frozenset[str]] = {}

    # -- nodes and inputs -----------------------------------------------------------------------------------------

    def set_node(self, info: NodeInfo, now: float) -> None:
        """Register a node or update its site and maintenance flag (from the fleet store, at start and on change)."""
        created = info.node_id not in self._nodes
        node = self._node(info.node_id, now, info.site_id)
        node.site_id, node.maintenance = info.site_id, info.maintenance
        if info.last_seen is not None:
            node.ops.last_seen = info.last_seen if created else max(node.ops.last_seen, info.last_seen)

    def remove_node(self, node_id: str) -> None:
        """Forget a decommissioned node's rule state (its alerts stay in the engine until resolved or pruned)."""
        self._nodes.pop(node_id, None)

    def on_liveness(self, liveness: Liveness, now: float) -> list[Notification]:
        """The registry saw a birth (online) or a last will (offline)."""
        node = self._node(liveness.node_id, now)
        node.ops.online = liveness.online
        if liveness.online:
            node.ops.last_seen = now
        return self._evaluate(node, now)

    def on_telemetry(self, sample: TelemetrySample, now: float) -> list[Notification]:
        """A telemetry sample arrived."""
        node = self._ingest(sample, now)
        operations.record_sample(node.ops, sample, now)
        readings = sample.compartments
        if readings != node.readings:  # a node sends the same readings sample after sample: they change nothing
            compartment, record = node.compartment, mechanical.record_reading
            for reading in readings:
                record(compartment(reading.compartment), reading, now)
            once = len({r.compartment for r in readings}) == len(readings)  # a compartment read twice is not
            node.readings, node.calm = readings if once else None, None
        return self._evaluate(node, now)

    def warm(self, sample: TelemetrySample) -> None:
        """Fold in a past sample without evaluating (after a restart, replay the last battery window from storage)."""
        self._ingest(sample, sample.received_at)

    def on_door_edge(self, edge: DoorEdge, now: float) -> list[Notification]:
        """A door event arrived."""
        node = self._seen(edge.node_id, now)
        node.readings = node.calm = None
        mechanical.record_edge(node.compartment(edge.compartment), edge, now)
        security.record_edge(node.security, edge, now)
        return self._evaluate(node, now)

    def on_door_outcome(self, outcome: DoorOutcome, now: float) -> list[Notification]:
        """A door command's result arrived."""
        node = self._seen(outcome.node_id, now)
        node.calm = None
        params = self.rules.for_site(node.site_id).mechanical
        mechanical.record_outcome(node.compartment(outcome.compartment), outcome, now, params)
        return self._evaluate(node, now)

    def on_keypad_lockout(self, lockout: KeypadLockout, now: float) -> list[Notification]:
        """A keypad event arrived."""
        node = self._seen(lockout.node_id, now)
        security.record_lockout(node.security, lockout)
        return self._evaluate(node, now)

    def set_breaker(self, breaker: BreakerState, now: float) -> list[Notification]:
        """The fleet open breaker changed."""
        self._breaker = breaker
        return self._evaluate_fleet(now)

    # -- evaluation -----------------------------------------------------------------------------------------------

    def tick(self, now: float) -> list[Notification]:
        """Evaluate every rule for every node and site at ``now``; announce raises a silence was holding back."""
        out: list[Notification] = []
        offline: dict[str, bool] = {}
        sites: dict[str, list[NodeState]] = {}
        for node in self._nodes.values():
            params = self.rules.for_site(node.site_id).operations
            offline[node.node_id] = operations.offline(node.ops, params, now)
            if node.site_id is not None:
                sites.setdefault(node.site_id, []).append(node)
        for site_id, members in sites.items():
            out += self._evaluate_site(site_id, members, offline, now)
        for node in self._nodes.values():
            out += self._evaluate(node, now, offline[node.node_id], timer=True)
        out += self._evaluate_fleet(now)
        out += self.engine.sweep(now)
        return out

    def _evaluate_site(
        self, site_id: str, members: list[NodeState], offline: dict[str, bool], now: float
    ) -> list[Notification]:
        rules = self.rules.for_site(site_id)
        max_age = rules.thermal.peer_max_age_s
        self._peers[site_id] = thermal.site_peers(
            n.thermal.temp
            for n in members
            if n.thermal.temp is not None and not offline[n.node_id] and now - n.thermal.received_at <= max_age
        )
        emit = Emitter(self.engine.is_open, None, site_id, frozenset(rules.suppression.disabled))
        down = [n.node_id for n in members if offline[n.node_id]]
        raising = operations.evaluate_site(down, len(members), rules.operations, emit)
        out = self.engine.apply(now, emit.observations)
        if raising or self.engine.is_open(alert_id(RuleName.SITE_UPLINK_LOST, site_id=site_id)):
            self._sites_down.add(site_id)
        else:
            self._sites_down.discard(site_id)
        return out

    def _evaluate(
        self, node: NodeState, now: float, is_offline: bool | None = None, *, timer: bool = False
    ) -> list[Notification]:
        rules = self.rules.for_site(node.site_id)
        if is_offline is None:
            is_offline = operations.offline(node.ops, rules.operations, now)
        hold_offline = node.site_id in self._sites_down or (is_offline and not timer)
        quiet = self._quiet_for(rules, node, is_offline, hold_offline)
        engine = self.engine
        emit = Emitter(engine.is_open, node.node_id, node.site_id, quiet, engine.open_rules(node.node_id))
        operations.evaluate(node.ops, rules.operations, now, emit, is_offline)
        if not is_offline:
            battery.evaluate(node.battery, rules.battery, now, emit)
            thermal.evaluate(node.thermal, rules.thermal, now, emit, self._peers.get(node.site_id or ""))
            security.evaluate(node.security, rules.security, now, emit)
            self._evaluate_compartments(node, rules.mechanical, now, emit)
        return engine.apply(now, emit.observations) if emit.observations else []

    @staticmethod
    def _evaluate_compartments(node: NodeState, p: MechanicalParams, now: float, emit: Emitter) -> None:
        """Skips the quiet compartments (nothing to raise) unless a clear of theirs may be kept."""
        clearing = emit.may_clear(mechanical.QUIET_CLEARS)
        if node.calm is p and not clearing:
            return
        calm = True
        for compartment, state in node.compartments.items():
            if not mechanical.quiet(state, p):
                calm = False
            elif not clearing:
                continue
            mechanical.evaluate(compartment, state, p, now, emit)
        node.calm = p if calm else None

    def _evaluate_fleet(self, now: float) -> list[Notification]:
        rules = self.rules.defaults
        emit = Emitter(self.engine.is_open, None, None, frozenset(rules.suppression.disabled))
        security.evaluate_breaker(self._breaker, rules.security, now, emit)
        return self.engine.apply(now, emit.observations)

    def _quiet_for(self, rules: RuleSet, node: NodeState, is_offline: bool, hold_offline: bool) -> frozenset[str]:
        key = (id(rules), node.maintenance, is_offline, hold_offline)
        quiet = self._quiet.get(key)
        if quiet is None:
            rules_quiet: set[str] = set(rules.suppression.disabled)
            if node.maintenance:
                rules_quiet |= rules.maintenance_quiet()
            if is_offline:
                rules_quiet |= _DERIVED
            if hold_offline:
                rules_quiet.add(RuleName.NODE_OFFLINE)
            quiet = self._quiet[key] = frozenset(rules_quiet)
        return quiet

    # -- node state -----------------------------------------------------------------------------------------------

    def _node(self, node_id: str, now: float, site_id: str | None = None) -> NodeState:
        node = self._nodes.get(node_id)
        if node is None:
            rules = self.rules.for_site(site_id)
            node = NodeState(node_id, site_id, False, OperationsState(now, now), thermal.new_state(rules.thermal))
            self._nodes[node_id] = node
        elif site_id is not None:
            node.site_id = site_id
        return node

    def _seen(self, node_id: str, now: float) -> NodeState:
        node = self._node(node_id, now)
        node.ops.last_seen = max(node.ops.last_seen, now)
        return node

    def _ingest(self, sample: TelemetrySample, now: float) -> NodeState:
        node = self._node(sample.node_id, now, sample.site_id)
        rules = self.rules.for_site(node.site_id)
        battery.record(node.battery, sample, rules.battery)
        thermal.record(node.thermal, sample.temp_c, now, rules.thermal, self._peers.get(node.site_id or ""))
        return node

    # -- queries, operator actions, persistence -------------------------------------------------------------------

    def forecast(self, node_id: str, now: float) -> battery.BatteryForecast | None:
        """The node's battery time-to-empty forecast at ``now`` (``None``: no forecast)."""
        node = self._nodes.get(node_id)
        if node is None:
            return None
        return battery.forecast(node_id, node.battery, self.rules.for_site(node.site_id).battery, now)

    def forecasts(self, now: float) -> list[battery.BatteryForecast]:
        """Every node's forecast that exists, soonest empty first (what the swap queue ranks by)."""
        found = [f for f in (self.forecast(n, now) for n in self._nodes) if f is not None]
        return sorted(found, key=lambda f: (f.hours_to_empty is None, f.hours_to_empty or 0.0, f.node_id))

    def acknowledge(self, alert_id: str, by: str, now: float) -> Notification | None:
        """An operator acknowledged an alert (see :meth:`AlertEngine.acknowledge`)."""
        return self.engine.acknowledge(alert_id, by, now)

    def add_silence(self, silence: Silence) -> None:
        """Add or replace a silence."""
        self.engine.add_silence(silence)

    def expire_silence(self, silence_id: str, now: float) -> list[Notification]:
        """End a silence now; returns the raises it held back."""
        return self.engine.expire_silence(silence_id, now)

    def dump(self) -> dict[str, Any]:
        """The state to persist: the engine's records and silences (rule windows rebuild from data)."""
        return self.engine.dump()

    @classmethod
    def restore(cls, rules: RulesConfig, data: dict[str, Any]) -> "AlertMonitor":
        """A monitor continuing from :meth:`dump` output: open alerts keep their episode, nothing is re-announced."""
        return cls(rules, AlertEngine.load(data))
