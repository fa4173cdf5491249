"""Mechanical rules, per compartment: repeated jams, a door held open, a lock fault, a wearing door switch.

Inputs are door edges (``DoorEdge``), door command outcomes (``DoorOutcome``: ``opened`` with its switch latency,
``already_open``, ``jammed``, or ``failed``) and each telemetry sample's door and lock readings. A compartment gets
state only once something happens to it, and keeps O(window) of it: jam times within ``jam_window_s``, the first
``latency_baseline_n`` latencies folded into one median, the last ``latency_recent_n`` latencies.
"""

from collections import deque
from dataclasses import dataclass, field

from controller.alerts.inputs import CompartmentReading, DoorEdge, DoorOutcome
from controller.alerts.model import Detail, RuleName, Severity
from controller.alerts.params import MechanicalParams
from controller.alerts.rules.base import Emitter
from controller.alerts.stats import median


@dataclass(slots=True)
class CompartmentState:
    """One compartment's mechanical history."""

    jams: deque[float] = field(default_factory=deque)
    new_jams: int = 0
    open_since: float | None = None
    fault_at: float | None = None
    new_faults: int = 0
    unlocked_since: float | None = None
    baseline_samples: list[float] = field(default_factory=list)
    baseline_ms: float | None = None
    recent_ms: deque[float] = field(default_factory=deque)


def record_outcome(state: CompartmentState, outcome: DoorOutcome, now: float, p: MechanicalParams) -> None:
    """Fold in a door command's outcome."""
    if outcome.result == "jammed":
        state.jams.append(now)
        state.new_jams += 1
    elif outcome.result == "failed":
        state.fault_at = now
        state.new_faults += 1
    elif outcome.result == "opened":
        state.fault_at = None  # the lock worked
        if outcome.switch_latency_ms is not None:
            _latency(state, float(outcome.switch_latency_ms), p)


def _latency(state: CompartmentState, ms: float, p: MechanicalParams) -> None:
    if state.baseline_ms is None:
        state.baseline_samples.append(ms)
        if len(state.baseline_samples) >= p.latency_baseline_n:
            state.baseline_ms = median(state.baseline_samples)
            state.baseline_samples = []
        return
    state.recent_ms.append(ms)
    while len(state.recent_ms) > p.latency_recent_n:
        state.recent_ms.popleft()


def record_edge(state: CompartmentState, edge: DoorEdge, now: float) -> None:
    """Fold in a door switch edge (the device time says when the door opened)."""
    if edge.opened:
        state.open_since = min(edge.ts, now) if state.open_since is None else state.open_since
    else:
        state.open_since = None


def record_reading(state: CompartmentState, reading: CompartmentReading, now: float) -> None:
    """Fold in a telemetry reading: it catches a door edge or a lock state the events missed."""
    if not reading.door_open:
        state.open_since = None
    elif state.open_since is None:
        state.open_since = now
    if reading.locked:
        state.unlocked_since = None
    elif state.unlocked_since is None:
        state.unlocked_since = now


QUIET_CLEARS = frozenset({RuleName.COMPARTMENT_JAMMED, RuleName.DOOR_HELD_OPEN, RuleName.LOCK_FAULT})
"""The only verdicts :func:`evaluate` gives on a :func:`quiet` compartment: clears of these."""


def quiet(state: CompartmentState, p: MechanicalParams) -> bool:
    """True when :func:`evaluate` can raise nothing here: no jam in the window, door closed, locked, no lock fault,
    too few switch latencies to compare. With none of its node's :data:`QUIET_CLEARS` open (no clear to say
    either), the monitor skips such a compartment: most of them, most of the time, at a telemetry sample per node
    every few seconds."""
    return (
        not state.jams
        and state.open_since is None
        and state.unlocked_since is None
        and state.fault_at is None
        and (state.baseline_ms is None or len(state.recent_ms) < p.latency_recent_n)
    )


def evaluate(compartment: str, state: CompartmentState, p: MechanicalParams, now: float, emit: Emitter) -> None:
    """Jam, held-open, lock and wear verdicts for one compartment."""
    _jams(compartment, state, p, now, emit)
    held = now - state.open_since if state.open_since is not None else 0.0
    if held >= p.door_open_max_s:
        summary = f"door of {compartment} open for {held / 60:.0f} min"
        emit.raise_(RuleName.DOOR_HELD_OPEN, Severity.WARNING, summary, value=held, compartment=compartment)
    else:
        emit.clear(RuleName.DOOR_HELD_OPEN, compartment)
    _lock(compartment, state, p, now, emit)
    _wear(compartment, state, p, emit)


def _jams(compartment: str, state: CompartmentState, p: MechanicalParams, now: float, emit: Emitter) -> None:
    while state.jams and state.jams[0] <= now - p.jam_window_s:
        state.jams.popleft()
    count = len(state.jams)
    if count >= p.jam_raise_count:
        summary = f"{compartment} jammed {count} times in {p.jam_window_s / 60:.0f} min"
        if emit.raise_(
            RuleName.COMPARTMENT_JAMMED,
            Severity.WARNING,
            summary,
            value=float(count),
            occurrences=state.new_jams,
            compartment=compartment,
        ):
            state.new_jams = 0
    elif count <= p.jam_clear_count:
        emit.clear(RuleName.COMPARTMENT_JAMMED, compartment)


def _lock(compartment: str, state: CompartmentState, p: MechanicalParams, now: float, emit: Emitter) -> None:
    stuck = state.unlocked_since is not None and now - state.unlocked_since >= p.stuck_unlocked_s
    failed = state.fault_at is not None and now - state.fault_at < p.lock_fault_quiet_s
    if stuck or failed:
        summary = f"lock of {compartment} " + ("stays unlocked (relay stuck?)" if stuck else "failed to open")
        raised = emit.raise_(
            RuleName.LOCK_FAULT, Severity.WARNING, summary, occurrences=state.new_faults, compartment=compartment
        )
        if raised:
            state.new_faults = 0
    else:
        emit.clear(RuleName.LOCK_FAULT, compartment)


def _wear(compartment: str, state: CompartmentState, p: MechanicalParams, emit: Emitter) -> None:
    base = state.baseline_ms
    if base is None or len(state.recent_ms) < p.latency_recent_n:
        return
    recent = median(list(state.recent_ms))
    if recent >= base * p.latency_raise_ratio and recent - base >= p.latency_min_increase_ms:
        summary = f"door switch of {compartment} slower: {recent:.0f} ms against {base:.0f} ms when new"
        details: dict[str, Detail] = {"recent_ms": recent, "baseline_ms": base}
        emit.raise_(
            RuleName.DOOR_SWITCH_WEAR, Severity.INFO, summary, value=recent, details=details, compartment=compartment
        )
    elif recent <= base * p.latency_clear_ratio:
        emit.clear(RuleName.DOOR_SWITCH_WEAR, compartment)
