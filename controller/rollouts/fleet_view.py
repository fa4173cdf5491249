"""The rollout engine's view of the fleet, built from the registry: the adapter's input to every step.

Also the ``updating`` flag the runner publishes for the reservation allocator.
"""

from collections.abc import Container, Iterable
from typing import Final

from controller.fleet.registry import NodeRecord
from controller.fleet.registry import NodeState as Liveness
from controller.rollouts.targeting import NodeFacts

UNASSIGNED_SITE: Final = "unassigned"
"""The site of a node whose birth names none (they share one K limit)."""


class UpdatingNodes(Container[str]):
    """The contention policy's ``updating`` flag: nodes some rollout has in flight (replaced whole, read anywhere)."""

    def __init__(self) -> None:
        self.nodes: frozenset[str] = frozenset()

    def __contains__(self, node_id: object) -> bool:
        return node_id in self.nodes


def fleet_facts(
    records: Iterable[NodeRecord], now: float, maintenance: Container[str], updating: Container[str]
) -> dict[str, NodeFacts]:
    """The rollout engine's fleet snapshot, keyed by node id."""
    return {
        r.node_id: NodeFacts(
            node_id=r.node_id,
            site=r.birth.site or UNASSIGNED_SITE,
            hardware_model=r.birth.hardware_model,
            version=r.birth.firmware_version,
            online=r.state(now) is Liveness.ONLINE,
            maintenance=r.node_id in maintenance,
            updating=r.node_id in updating,
        )
        for r in records
    }
