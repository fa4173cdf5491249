"""Read-only views of a rollout for the API, the CLI and the metrics: counts per state and per wave."""

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from controller.rollouts.book import NodeBook
from controller.rollouts.states import NodeState


class Phase(StrEnum):
    """Where the rollout as a whole is."""

    RUNNING = "running"
    PAUSED = "paused"
    """No new dispatch; nodes already updating carry on and their failures still abort."""
    COMPLETED = "completed"
    ABORTED = "aborted"
    """Stopped for good: by an operator, a threshold breach or the rollout timeout."""
    ROLLED_BACK = "rolled_back"
    """An operator asked for rollback: every node that committed was sent a Rollback."""


ACTIVE = frozenset({Phase.RUNNING, Phase.PAUSED})


@dataclass(frozen=True, slots=True)
class WaveProgress:
    """One wave: its size, what it needs to pass, and how many of its nodes are in each state."""

    wave: int
    size: int
    required_successes: int
    counts: dict[NodeState, int]


@dataclass(frozen=True, slots=True)
class Progress:
    """The whole rollout at a glance."""

    phase: Phase
    current_wave: int
    waves: list[WaveProgress]
    totals: dict[NodeState, int]
    retries: int
    abort_reason: str | None


@dataclass(frozen=True, slots=True)
class NodeView:
    """One node's place in the rollout."""

    node_id: str
    site: str
    wave: int
    state: NodeState
    reason: str | None
    attempt: int
    retries: int
    since: datetime
    """When it entered this state or last reported it (the step timeout runs from here)."""


def wave_progress(book: NodeBook, required: list[int]) -> list[WaveProgress]:
    """Per-wave counts (copies, safe to keep)."""
    return [
        WaveProgress(wave, size, required[wave], dict(book.counts[wave])) for wave, size in enumerate(book.wave_sizes)
    ]


def totals(waves: list[WaveProgress]) -> dict[NodeState, int]:
    """Counts per state over all waves."""
    result = dict.fromkeys(NodeState, 0)
    for wave in waves:
        for state, count in wave.counts.items():
            result[state] += count
    return result
