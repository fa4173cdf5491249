"""What the rollout engine asks its adapter to do; plain values, in the order they must be carried out."""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DispatchUpdate:
    """Send the release's update command to ``node_id``; ``attempt`` counts from 1 and rises with each retry."""

    node_id: str
    attempt: int


@dataclass(frozen=True, slots=True)
class Cancel:
    """Tell ``node_id`` to drop the update it was sent (it has not started installing)."""

    node_id: str


@dataclass(frozen=True, slots=True)
class Rollback:
    """Tell ``node_id``, which committed the release, to go back to its previous release."""

    node_id: str


@dataclass(frozen=True, slots=True)
class WaveAdvanced:
    """Wave ``wave`` (0 is the canary) may now start; it holds ``size`` nodes."""

    wave: int
    size: int


@dataclass(frozen=True, slots=True)
class Aborted:
    """The rollout stopped dispatching for good; ``reason`` is for the operator, ``by`` is who or what stopped it."""

    reason: str
    by: str


@dataclass(frozen=True, slots=True)
class Completed:
    """Every target reached a final state without a threshold breach."""

    succeeded: int
    failed: int


Action = DispatchUpdate | Cancel | Rollback | WaveAdvanced | Aborted | Completed
"""Anything :class:`~controller.rollouts.engine.Rollout` returns."""
