"""Security rules: an uncommanded door open, a keypad lockout, the fleet open breaker tripping.

Each is an event alert: it raises on the event (the count grows with each repeat) and clears when the condition
is over: ``uncommanded_quiet_s`` without another uncommanded open, the keypad's ``locked_until`` passed, the
breaker reset (or refilled: its ``until`` passed).
"""

from dataclasses import dataclass, field

from controller.alerts.inputs import BreakerState, DoorEdge, KeypadLockout
from controller.alerts.model import RuleName
from controller.alerts.params import SecurityParams
from controller.alerts.rules.base import Emitter


@dataclass(slots=True)
class SecurityState:
    """One node's recent security events."""

    keypad_until: float | None = None
    keypad_attempts: int = 0
    new_lockouts: int = 0
    uncommanded_at: dict[str, float] = field(default_factory=dict)
    new_uncommanded: dict[str, int] = field(default_factory=dict)


def record_edge(state: SecurityState, edge: DoorEdge, now: float) -> None:
    """Remember an uncommanded opening."""
    if edge.opened and edge.uncommanded:
        state.uncommanded_at[edge.compartment] = now
        state.new_uncommanded[edge.compartment] = state.new_uncommanded.get(edge.compartment, 0) + 1


def record_lockout(state: SecurityState, lockout: KeypadLockout) -> None:
    """Remember a keypad lockout until its end."""
    state.keypad_until = max(state.keypad_until or lockout.locked_until, lockout.locked_until)
    state.keypad_attempts = lockout.wrong_attempts
    state.new_lockouts += 1


def evaluate(state: SecurityState, p: SecurityParams, now: float, emit: Emitter) -> None:
    """Uncommanded-open and keypad verdicts for one node."""
    for compartment, at in list(state.uncommanded_at.items()) if state.uncommanded_at else ():
        if now - at < p.uncommanded_quiet_s:
            new = state.new_uncommanded.get(compartment, 0)
            summary = f"door of {compartment} opened with no command and no code"
            if emit.raise_(
                RuleName.UNCOMMANDED_OPEN, p.uncommanded_severity, summary, occurrences=new, compartment=compartment
            ):
                state.new_uncommanded[compartment] = 0
        else:
            emit.clear(RuleName.UNCOMMANDED_OPEN, compartment)
            if emit.wants(RuleName.UNCOMMANDED_OPEN):
                del state.uncommanded_at[compartment]
                state.new_uncommanded.pop(compartment, None)
    until = state.keypad_until
    if until is not None and now < until:
        summary = f"keypad locked after {state.keypad_attempts} wrong codes"
        raised = emit.raise_(
            RuleName.KEYPAD_LOCKOUT, p.keypad_severity, summary, value=until, occurrences=state.new_lockouts
        )
        if raised:
            state.new_lockouts = 0
    elif until is not None:
        emit.clear(RuleName.KEYPAD_LOCKOUT)


def evaluate_breaker(breaker: BreakerState | None, p: SecurityParams, now: float, emit: Emitter) -> None:
    """The fleet-wide open breaker verdict (``emit`` has neither node nor site: a fleet alert)."""
    if breaker is None:
        return
    if breaker.tripped and (breaker.until is None or now < breaker.until):
        summary = "fleet open breaker tripped" + (f": {breaker.detail}" if breaker.detail else "")
        emit.raise_(RuleName.OPEN_BREAKER_TRIPPED, p.breaker_severity, summary)
    else:
        emit.clear(RuleName.OPEN_BREAKER_TRIPPED)
