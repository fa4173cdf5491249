"""Per-node rollout states, who sets each one, and which moves between them are legal.

A node is only ever counted as ``succeeded`` when the node itself reports ``succeeded``, which the agent sends after
it restarted into the new release, passed its health check and committed; the engine never infers success from a
download, an install or a restart. ``rolled_back`` is a failure. ``dispatched`` is the controller's own state for
"update command sent, no report yet": it holds a site slot and its step timeout runs, like the node's progress states.

| State | By | Meaning | Next states |
|---|---|---|---|
| `queued` | engine | Waits for its wave, a site slot, the rate limit or a retry | dispatched, deferred, cancelled |
| `deferred` | both | Not started, not failed; `reason` says why; no site slot | dispatched, deferred, cancelled |
| `dispatched` | engine | Command sent, no report yet | downloading…testing, deferred, failed, timed_out, cancelled |
| `downloading` | node | Fetching the artifact | verifying…testing, deferred, failed, timed_out, cancelled |
| `verifying` | node | Signature, hardware, floor, expiry | installing…, deferred, failed, timed_out, cancelled |
| `installing` | node | Writing the new slot; past cancelling | restarting, testing, failed, rolled_back, timed_out |
| `restarting` | node | Slot switched, restarting into it | testing, failed, rolled_back, timed_out |
| `testing` | node | Trial start: the post-restart health check | succeeded, failed, rolled_back, timed_out |
| `succeeded` | node | Committed after a passing health check: the only success | rolled_back (operator rollback) |
| `failed` | node | Failed with `reason`; a transient reason is retried | queued (retry), rolled_back |
| `rolled_back` | node | Back on its previous release; a failure, never retried | — |
| `timed_out` | engine | No report within the step timeout; retried if allowed | queued (retry), a late node report |
| `cancelled` | engine | Stopped by an abort before installing | a late node report (if it was sent a command) |

Deferral reasons: from the controller ``not_in_fleet``, ``offline``, ``maintenance``, ``updating_elsewhere``,
``outside_window``; from the agent its own (e.g. ``door_open``, ``command_in_flight``, ``reservation_window``,
``battery_low``). A deferred node is sent its update again after ``defer_retry_s`` (agent) or as soon as the gate
clears (controller). A retry re-queues the node with ``attempt`` + 1 after ``retry_delay_s``.

A report repeating the current state is a heartbeat: it resets the step timeout. Progress may skip states (a lost
report must not wedge a node) but never goes back. Reports after ``timed_out`` or ``cancelled`` are accepted because
the node's own word is the truth about what it runs.
"""

from enum import StrEnum
from typing import Final


class NodeState(StrEnum):
    """Where one node is in one rollout (see the module table)."""

    QUEUED = "queued"
    DEFERRED = "deferred"
    DISPATCHED = "dispatched"
    DOWNLOADING = "downloading"
    VERIFYING = "verifying"
    INSTALLING = "installing"
    RESTARTING = "restarting"
    TESTING = "testing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"


S = NodeState

PIPELINE: Final = (S.DOWNLOADING, S.VERIFYING, S.INSTALLING, S.RESTARTING, S.TESTING)
"""The node's progress states, in order."""

IN_FLIGHT: Final = frozenset({S.DISPATCHED, *PIPELINE})
"""States that hold a site slot and run the step timeout."""

WAITING: Final = frozenset({S.QUEUED, S.DEFERRED})
"""States the engine may dispatch from."""

TERMINAL: Final = frozenset({S.SUCCEEDED, S.FAILED, S.ROLLED_BACK, S.TIMED_OUT, S.CANCELLED})
"""States a node ends in (a late report may still move it, see the table)."""

FAILURES: Final = frozenset({S.FAILED, S.ROLLED_BACK, S.TIMED_OUT})
"""Terminal states counted against the failure threshold."""

CANCELLABLE: Final = frozenset({S.DISPATCHED, S.DOWNLOADING, S.VERIFYING})
"""In-flight states before the point of no return: abort sends these a Cancel."""

REPORTED: Final = frozenset(
    {S.DEFERRED, *PIPELINE, S.SUCCEEDED, S.FAILED, S.ROLLED_BACK},
)
"""States a node may report."""

_LATE_TRUTH: Final = frozenset({*PIPELINE, S.SUCCEEDED, S.FAILED, S.ROLLED_BACK})


def _forward(after: NodeState) -> frozenset[NodeState]:
    start = PIPELINE.index(after) if after in PIPELINE else 0
    return frozenset(PIPELINE[start:])


REPORT_MOVES: Final[dict[NodeState, frozenset[NodeState]]] = {
    S.QUEUED: frozenset(),
    S.DEFERRED: frozenset({S.DEFERRED}),
    S.DISPATCHED: _forward(S.DOWNLOADING) | {S.DEFERRED, S.FAILED},
    S.DOWNLOADING: _forward(S.DOWNLOADING) | {S.DEFERRED, S.FAILED},
    S.VERIFYING: _forward(S.VERIFYING) | {S.DEFERRED, S.FAILED},
    S.INSTALLING: _forward(S.INSTALLING) | {S.FAILED, S.ROLLED_BACK},
    S.RESTARTING: _forward(S.RESTARTING) | {S.FAILED, S.ROLLED_BACK},
    S.TESTING: frozenset({S.TESTING, S.SUCCEEDED, S.FAILED, S.ROLLED_BACK}),
    S.SUCCEEDED: frozenset({S.SUCCEEDED}),
    S.FAILED: frozenset({S.FAILED, S.ROLLED_BACK}),
    S.ROLLED_BACK: frozenset({S.ROLLED_BACK}),
    S.TIMED_OUT: _LATE_TRUTH,
    S.CANCELLED: _LATE_TRUTH,
}
"""For each current state, the node reports that are legal (the engine adds: succeeded → rolled_back on rollback)."""
