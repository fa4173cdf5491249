"""The keypad: checks a typed code against the node's live reservations, with no network. Pure (time is passed in).

A code is accepted once (the node remembers used codes until their window ends), within its window widened by a
small clock skew. Wrong codes are throttled per scope, the code's first digit (:meth:`Keypad.scope_of`): ``max_wrong``
wrong codes of one scope within ``wrong_window`` lock that scope for ``first_lockout``, and every further wrong code
of it before ``forgive_after`` of quiet locks it again for twice as long, up to ``max_lockout``. Someone typing wrong
codes thus locks out the codes that start like theirs, for a while, never the whole locker for long; guessing stays
as slow as a whole-keypad lock made it: once backed off, one guess per scope per ``max_lockout`` (ten scopes, 40 an
hour). A lock is reported so that the agent raises an event.
"""

import hmac
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum

from node_agent.ledger import Ledger, SlotState
from schemas.codes import CodePurpose, offline_code


@dataclass(frozen=True, slots=True)
class Grant:
    """One thing a code may unlock now: a reservation's deposit or pickup, in its window."""

    purpose: CodePurpose
    compartment: str
    reservation_id: str
    not_before: datetime
    not_after: datetime


def grants(ledger: Ledger) -> list[Grant]:
    """What codes may unlock now: the deposit of every held compartment, the pickup of every occupied one."""
    found = []
    for compartment, slot in ledger.slots.items():
        if slot.reservation_id is None or slot.window is None:
            continue
        if slot.state is SlotState.HELD:
            until, purpose = slot.window.hold_until, CodePurpose.DEPOSIT
        elif slot.state is SlotState.OCCUPIED:
            until, purpose = slot.window.pickup_until, CodePurpose.PICKUP
        else:
            continue
        found.append(Grant(purpose, compartment, slot.reservation_id, slot.window.opens_at, until))
    return found


@dataclass(frozen=True, slots=True)
class ScopeThrottle:
    """Wrong codes of one scope: recent attempts, how often it was locked in a row, until when, the last wrong."""

    wrong: tuple[datetime, ...] = ()
    level: int = 0
    """Locks in a row; the next one lasts ``first_lockout * 2**level`` (capped). Back to 0 after a quiet spell."""
    locked_until: datetime | None = None
    last_wrong: datetime | None = None


@dataclass(frozen=True, slots=True)
class KeypadState:
    """What the keypad must remember across restarts: used codes (until their window ends) and each scope's throttle."""

    used: tuple[tuple[str, datetime], ...] = ()
    scopes: tuple[tuple[str, ScopeThrottle], ...] = ()


class KeypadRefusal(StrEnum):
    """Why a typed code opened nothing."""

    LOCKED = "locked"
    WRONG = "wrong"
    USED = "used"


@dataclass(frozen=True, slots=True)
class KeypadResult:
    """The grant a code matched, or why it was refused; ``locked_now`` is True when this attempt locked its scope."""

    grant: Grant | None
    refused: KeypadRefusal | None = None
    locked_now: bool = False
    locked_until: datetime | None = None
    scope: str | None = None
    """The scope of a refused code (see :meth:`Keypad.scope_of`)."""
    wrong_attempts: int = 0
    """With ``locked_now``: the wrong codes of the scope that led to this lock."""


@dataclass(slots=True)
class Keypad:
    """Verifies codes for one node with that node's key, throttling wrong codes per scope."""

    key: bytes = field(repr=False)
    node_id: str
    skew: timedelta = timedelta(minutes=2)
    max_wrong: int = 5
    wrong_window: timedelta = timedelta(minutes=15)
    first_lockout: timedelta = timedelta(seconds=30)
    max_lockout: timedelta = timedelta(minutes=15)
    forgive_after: timedelta = timedelta(hours=1)
    scope_digits: int = 1
    _used: dict[str, datetime] = field(default_factory=dict, init=False, repr=False)
    _scopes: dict[str, ScopeThrottle] = field(default_factory=dict, init=False, repr=False)

    def snapshot(self) -> KeypadState:
        """The state to persist."""
        return KeypadState(tuple(self._used.items()), tuple(self._scopes.items()))

    def restore(self, state: KeypadState) -> None:
        """Continue from a persisted state."""
        self._used = dict(state.used)
        self._scopes = dict(state.scopes)

    def scope_of(self, code: str) -> str:
        """The scope a code's wrong attempts count against: its first ``scope_digits`` digits ("" if not digits)."""
        prefix = code[: self.scope_digits]
        return prefix if prefix.isascii() and prefix.isdigit() else ""

    def locked_until(self, code: str, now: datetime) -> datetime | None:
        """Until when codes of ``code``'s scope are refused, if they are at ``now``."""
        until = self._scopes.get(self.scope_of(code), ScopeThrottle()).locked_until
        return until if until is not None and now < until else None

    def enter(self, code: str, grants: list[Grant], now: datetime) -> KeypadResult:
        """Check ``code`` against ``grants`` (the ledger's live reservations) at ``now``."""
        self._forget(now)
        scope = self.scope_of(code)
        locked_until = self.locked_until(code, now)
        if locked_until is not None:
            return KeypadResult(None, KeypadRefusal.LOCKED, locked_until=locked_until, scope=scope)
        if code in self._used:  # even once its compartment is free again: a replay, not a typo
            return self._wrong_attempt(scope, now, KeypadRefusal.USED)
        for grant in grants:
            if not grant.not_before - self.skew <= now <= grant.not_after + self.skew:
                continue
            expected = offline_code(
                self.key,
                grant.purpose,
                self.node_id,
                grant.compartment,
                grant.reservation_id,
                grant.not_before,
                grant.not_after,
            )
            if hmac.compare_digest(expected, code):
                self._used[code] = grant.not_after + self.skew
                return KeypadResult(grant)
        return self._wrong_attempt(scope, now, KeypadRefusal.WRONG)

    def _wrong_attempt(self, scope: str, now: datetime, why: KeypadRefusal) -> KeypadResult:
        throttle = self._scopes.get(scope, ScopeThrottle())
        wrong = (*throttle.wrong, now)
        if throttle.level == 0 and len(wrong) < self.max_wrong:
            self._scopes[scope] = replace(throttle, wrong=wrong, last_wrong=now)
            return KeypadResult(None, why, scope=scope)
        lockout = min(self.first_lockout * 2 ** min(throttle.level, 30), self.max_lockout)  # 2**30: no overflow
        self._scopes[scope] = ScopeThrottle((), throttle.level + 1, now + lockout, now)
        return KeypadResult(None, why, True, now + lockout, scope, len(wrong))

    def _forget(self, now: datetime) -> None:
        self._used = {k: until for k, until in self._used.items() if until >= now}
        kept = {}
        for scope, throttle in self._scopes.items():
            wrong = tuple(at for at in throttle.wrong if now - at <= self.wrong_window)
            quiet_since = max(filter(None, (throttle.locked_until, throttle.last_wrong)), default=None)
            if quiet_since is not None and now - quiet_since > self.forgive_after:
                continue  # quiet long enough: forgiven
            if wrong or throttle.level:
                kept[scope] = replace(throttle, wrong=wrong)
        self._scopes = kept
