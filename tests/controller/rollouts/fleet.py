"""Fleets, clocks and helpers shared by the rollout tests."""

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from controller.rollouts import Action, DispatchUpdate, NodeFacts, Rollout, RolloutPolicy, Target

T0 = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
RELEASE = "1.4.0"


def facts(node_id: str, site: str = "s1", **changes: object) -> NodeFacts:
    """A healthy node on 1.3.0."""
    base: dict[str, object] = {"hardware_model": "pi4-locker", "version": "1.3.0", "labels": {}}
    base.update(changes)
    return NodeFacts(node_id, site, **base)  # type: ignore[arg-type]


def fleet_of(sites: int, per_site: int) -> dict[str, NodeFacts]:
    """``sites`` sites named s0.. with ``per_site`` nodes each (n<site>-<i>)."""
    nodes = (facts(f"n{s}-{i}", f"s{s}") for s in range(sites) for i in range(per_site))
    return {n.node_id: n for n in nodes}


def start(fleet: dict[str, NodeFacts], policy: RolloutPolicy | None = None, target: Target | None = None) -> Rollout:
    """A rollout of RELEASE to ``fleet`` created at T0."""
    return Rollout.create("r1", RELEASE, target or Target(), policy or RolloutPolicy(), fleet.values(), T0)


def at(seconds: float) -> datetime:
    """T0 plus ``seconds``."""
    return T0 + timedelta(seconds=seconds)


def dispatched(actions: Iterable[Action]) -> list[str]:
    """Node ids of the DispatchUpdate actions."""
    return [a.node_id for a in actions if isinstance(a, DispatchUpdate)]


def commit(rollout: Rollout, node_id: str, now: datetime) -> list[Action]:
    """Walk ``node_id`` through every progress report to a committed success."""
    actions: list[Action] = []
    for state in ("downloading", "verifying", "installing", "restarting", "testing", "succeeded"):
        actions += rollout.on_report(node_id, state, None, now)
    return actions
