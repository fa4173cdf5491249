"""The rollout engine's errors: one family, so an adapter can catch :class:`RolloutError` as a whole."""

from controller.rollouts.states import NodeState


class RolloutError(Exception):
    """Anything the rollout engine refuses; the message says what and what to do."""


class NoTargetsError(RolloutError, ValueError):
    """The target selects no node of the fleet."""


class UnknownNodeError(RolloutError, LookupError):
    """A report or query names a node that is not part of the rollout."""

    def __init__(self, rollout_id: str, node_id: str) -> None:
        super().__init__(f"node {node_id} is not a target of rollout {rollout_id}; action=ignore the report")
        self.node_id = node_id


class IllegalReportError(RolloutError, ValueError):
    """A node report that is not a legal move from the node's current state (nothing was changed)."""

    def __init__(self, node_id: str, current: NodeState, reported: str) -> None:
        super().__init__(
            f"node {node_id}: report {reported!r} is not legal from {current.value!r}; the state is unchanged "
            "(out-of-order or stale report); action=log it and check the agent's OTA state"
        )
        self.node_id = node_id
        self.current = current
        self.reported = reported


class PhaseError(RolloutError):
    """An operator action the rollout's phase does not allow (pause a paused rollout, abort a finished one...)."""


class CorruptStateError(RolloutError, ValueError):
    """A stored rollout document that cannot be restored."""
