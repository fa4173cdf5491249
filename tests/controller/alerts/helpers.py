"""Builders for alert-rule tests: samples, a clocked monitor, and notification filters."""

from collections.abc import Iterable

from controller.alerts import (
    AlertMonitor,
    CompartmentReading,
    NodeInfo,
    Notification,
    RulesConfig,
    TelemetrySample,
    Transition,
)
from controller.alerts.inputs import PowerSource


def sample(
    t: float,
    node: str = "n1",
    *,
    soc: float = 80.0,
    charging: bool = False,
    power: PowerSource = "battery",
    cycles: int = 100,
    temp: float = 20.0,
    dropped: int = 0,
    skew_s: float = 0.0,
    replayed: bool = False,
    site: str | None = None,
    compartments: tuple[CompartmentReading, ...] = (),
) -> TelemetrySample:
    """A sample received at ``t`` whose device clock is ``skew_s`` behind."""
    return TelemetrySample(
        node_id=node,
        ts=t - skew_s,
        received_at=t,
        soc_pct=soc,
        charging=charging,
        power_source=power,
        cycle_count=cycles,
        temp_c=temp,
        outbox_dropped=dropped,
        replayed=replayed,
        site_id=site,
        compartments=compartments,
    )


def monitor(rules: RulesConfig | None = None, nodes: Iterable[str] = ("n1",), site: str = "s1") -> AlertMonitor:
    """A monitor with ``nodes`` registered in ``site`` at time 0."""
    mon = AlertMonitor(rules)
    for node in nodes:
        mon.set_node(NodeInfo(node, site), 0.0)
    return mon


def of(notes: Iterable[Notification], transition: Transition, rule: str | None = None) -> list[str]:
    """Ids of the notifications with this transition (and rule)."""
    return [n.alert_id for n in notes if n.transition is transition and (rule is None or n.rule == rule)]


def raised(notes: Iterable[Notification], rule: str | None = None) -> list[str]:
    """Ids raised."""
    return of(notes, Transition.RAISED, rule)


def resolved(notes: Iterable[Notification], rule: str | None = None) -> list[str]:
    """Ids resolved."""
    return of(notes, Transition.RESOLVED, rule)
