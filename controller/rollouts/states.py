"""Per-node rollout states, who sets each one, and which moves between them are legal.

The values are those of the contract's :class:`schemas.ota.OtaState`, plus the controller's own ``dispatched``
("update command sent, no report yet", which holds a site slot and runs the step timeout like a progress state).
A node is counted as ``succeeded`` only when it reports ``succeeded`` itself, which the agent does after it restarted
into the new release, passed its health check and committed (or at once when it already runs that release,
committed); the engine never infers success from a download, an install or a restart. ``rolled_back`` is a failure.

| State | By | Meaning | Next states |
|---|---|---|---|
| `queued` | engine | Waits for its wave, a site slot, the rate limit or a retry | dispatched, deferred, cancelled |
| `deferred` | both | Not started, not failed; `reason` says why; holds no site slot | see below |
| `dispatched` | engine | Command sent, no report yet | any progress, deferred, succeeded, failed, … |
| `downloading` | node | Fetching the artifact | verifying…, deferred, failed, cancelled, timed_out |
| `verifying` | node | Signature, hardware, floor, expiry, size, sha256 | installing…, deferred, failed, cancelled, … |
| `installing` | node | Writing the new slot, running slot untouched | restarting…, deferred, failed, cancelled, … |
| `restarting` | node | Slot switched, (re)starting into it; past cancelling | testing, failed, rolled_back, timed_out |
| `testing` | node | Trial start: the post-restart health check | succeeded, restarting (next start), rolled_back… |
| `succeeded` | node | Committed after a healthy trial start: the only success | rolled_back (operator rollback) |
| `failed` | node | Stopped before switching; `reason`; some reasons retried | queued (retry), rolled_back |
| `rolled_back` | node | Back on its previous release; a failure, never retried | — |
| `timed_out` | engine | No report within the step timeout; retried if allowed | queued (retry), a late node report |
| `cancelled` | engine | Withdrawn by an abort before switching slots | a late node report (if it had a command) |

``deferred`` comes in two kinds. Deferred by the controller (``not_in_fleet``, ``offline``, ``maintenance``,
``updating_elsewhere``, ``outside_maintenance_window``): the node has no command; the engine dispatches it when the
gate clears. Deferred by the node (``door_open``, ``command_in_flight``, ``reservation_due``, ``battery_low``…): the
node keeps its command, re-checks its own gate and repeats ``deferred`` (a heartbeat against the step timeout) until it
goes on by itself; its site slot is free meanwhile, and if it goes on while its site is full or the rollout is not
running, the engine sends it a Cancel and queues it again (``site_busy``/``paused``) with a new attempt.

A report repeating the current state is a heartbeat: it resets the step timeout. Progress may skip states (a lost
report must not wedge a node); the only way back is ``testing`` → ``restarting``, the agent's next trial start.
Reports after ``timed_out`` or ``cancelled`` are accepted because the node's word is the truth about what it runs; a
``cancelled`` report from a node the engine already took back (queued, deferred by the controller) is an
acknowledgement and changes nothing; ``queued`` from a ``dispatched`` node is its acceptance, a heartbeat. After an
operator rollback a committed node stays ``succeeded`` (its progress back is noted in ``reason``) until it reports
``rolled_back``.
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

TERMINAL: Final = frozenset({S.SUCCEEDED, S.FAILED, S.ROLLED_BACK, S.TIMED_OUT, S.CANCELLED})
"""States a node ends in (a late report may still move it, see the table)."""

FAILURES: Final = frozenset({S.FAILED, S.ROLLED_BACK, S.TIMED_OUT})
"""Terminal states counted against the failure threshold."""

CANCELLABLE: Final = frozenset({S.DISPATCHED, S.DOWNLOADING, S.VERIFYING, S.INSTALLING, S.DEFERRED})
"""States before the slot switch in which the node may hold a command: an abort sends these a Cancel."""

REPORTED: Final = frozenset({S.QUEUED, S.DEFERRED, *PIPELINE, S.SUCCEEDED, S.FAILED, S.ROLLED_BACK, S.CANCELLED})
"""States a node may report (the contract's OtaState minus the controller-only ``timed_out``)."""

_BEFORE_SWITCH: Final = frozenset({S.DEFERRED, S.FAILED, S.CANCELLED})
_LATE_TRUTH: Final = frozenset({*PIPELINE, S.SUCCEEDED, S.FAILED, S.ROLLED_BACK, S.CANCELLED})


def _forward(after: NodeState) -> frozenset[NodeState]:
    return frozenset(PIPELINE[PIPELINE.index(after) :])


REPORT_MOVES: Final[dict[NodeState, frozenset[NodeState]]] = {
    S.QUEUED: frozenset(),
    S.DEFERRED: _forward(S.DOWNLOADING) | _BEFORE_SWITCH,
    S.DISPATCHED: _forward(S.DOWNLOADING) | _BEFORE_SWITCH | {S.SUCCEEDED},
    S.DOWNLOADING: _forward(S.DOWNLOADING) | _BEFORE_SWITCH,
    S.VERIFYING: _forward(S.VERIFYING) | _BEFORE_SWITCH,
    S.INSTALLING: _forward(S.INSTALLING) | _BEFORE_SWITCH | {S.ROLLED_BACK},
    S.RESTARTING: frozenset({S.RESTARTING, S.TESTING, S.FAILED, S.ROLLED_BACK}),
    S.TESTING: frozenset({S.TESTING, S.RESTARTING, S.SUCCEEDED, S.FAILED, S.ROLLED_BACK}),
    S.SUCCEEDED: frozenset({S.SUCCEEDED}),
    S.FAILED: frozenset({S.FAILED, S.ROLLED_BACK}),
    S.ROLLED_BACK: frozenset({S.ROLLED_BACK}),
    S.TIMED_OUT: _LATE_TRUTH,
    S.CANCELLED: _LATE_TRUTH,
}
"""For each current state, the node reports that are legal when the node holds a command for it (deferred by the node,
in flight, or ended); the engine adds the acknowledgements and the operator rollback (succeeded → rolled_back)."""
