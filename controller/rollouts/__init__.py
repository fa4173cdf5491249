"""Firmware rollouts: targeting, waves, thresholds, per-node states, timeouts, retries and site gates, all pure.

:class:`Rollout` is the engine; the adapter feeds it the clock, the fleet snapshot and node reports, and carries out the
actions it returns. Node states and their legal moves are documented in :mod:`controller.rollouts.states`.
"""

from controller.rollouts.actions import Aborted, Action, Cancel, Completed, DispatchUpdate, Rollback, WaveAdvanced
from controller.rollouts.engine import Rollout
from controller.rollouts.errors import (
    CorruptStateError,
    IllegalReportError,
    NoTargetsError,
    PhaseError,
    RolloutError,
    UnknownNodeError,
)
from controller.rollouts.gating import DeferReason, MaintenanceWindow
from controller.rollouts.policy import RolloutPolicy, WaveRules
from controller.rollouts.progress import NodeView, Phase, Progress, WaveProgress
from controller.rollouts.states import NodeState
from controller.rollouts.targeting import NodeFacts, Target, VersionRange, select_targets

__all__ = [
    "Aborted",
    "Action",
    "Cancel",
    "Completed",
    "CorruptStateError",
    "DeferReason",
    "DispatchUpdate",
    "IllegalReportError",
    "MaintenanceWindow",
    "NoTargetsError",
    "NodeFacts",
    "NodeState",
    "NodeView",
    "Phase",
    "PhaseError",
    "Progress",
    "Rollback",
    "Rollout",
    "RolloutError",
    "RolloutPolicy",
    "Target",
    "UnknownNodeError",
    "VersionRange",
    "WaveAdvanced",
    "WaveProgress",
    "WaveRules",
    "select_targets",
]
