"""The keypad: checks a typed code against the node's live reservations, with no network. Pure (time is passed in).

A code is accepted once (the node remembers used codes until their window ends), within its window widened by a
small clock skew. Wrong codes are throttled: ``max_wrong`` within ``wrong_window`` lock the keypad for ``lockout``
and say so, so that the agent raises an event.
"""

import hmac
from collections import deque
from dataclasses import dataclass
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
class KeypadState:
    """What the keypad must remember across restarts: wrong attempts, used codes (until their window ends), lockout."""

    wrong: tuple[datetime, ...] = ()
    used: tuple[tuple[str, datetime], ...] = ()
    locked_until: datetime | None = None


class KeypadRefusal(StrEnum):
    """Why a typed code opened nothing."""

    LOCKED = "locked"
    WRONG = "wrong"
    USED = "used"


@dataclass(frozen=True, slots=True)
class KeypadResult:
    """The grant a code matched, or why it was refused; ``locked_now`` is True when this attempt locked the pad."""

    grant: Grant | None
    refused: KeypadRefusal | None = None
    locked_now: bool = False
    locked_until: datetime | None = None


class Keypad:
    """Verifies codes for one node with that node's key."""

    def __init__(
        self,
        key: bytes,
        node_id: str,
        *,
        skew: timedelta = timedelta(minutes=2),
        max_wrong: int = 10,
        wrong_window: timedelta = timedelta(minutes=15),
        lockout: timedelta = timedelta(minutes=15),
    ) -> None:
        self._key = key
        self.node_id = node_id
        self.skew = skew
        self.max_wrong = max_wrong
        self.wrong_window = wrong_window
        self.lockout = lockout
        self._wrong: deque[datetime] = deque()
        self._used: dict[str, datetime] = {}
        self.locked_until: datetime | None = None

    def snapshot(self) -> KeypadState:
        """The state to persist."""
        return KeypadState(tuple(self._wrong), tuple(self._used.items()), self.locked_until)

    def restore(self, state: KeypadState) -> None:
        """Continue from a persisted state."""
        self._wrong = deque(state.wrong)
        self._used = dict(state.used)
        self.locked_until = state.locked_until

    def enter(self, code: str, grants: list[Grant], now: datetime) -> KeypadResult:
        """Check ``code`` against ``grants`` (the ledger's live reservations) at ``now``."""
        self._forget(now)
        if self.locked_until is not None and now < self.locked_until:
            return KeypadResult(None, KeypadRefusal.LOCKED, locked_until=self.locked_until)
        if code in self._used:  # even once its compartment is free again: a replay, not a typo
            return self._wrong_attempt(now, KeypadRefusal.USED)
        for grant in grants:
            if not grant.not_before - self.skew <= now <= grant.not_after + self.skew:
                continue
            expected = offline_code(
                self._key,
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
        return self._wrong_attempt(now, KeypadRefusal.WRONG)

    def _wrong_attempt(self, now: datetime, why: KeypadRefusal) -> KeypadResult:
        self._wrong.append(now)
        if len(self._wrong) >= self.max_wrong:
            self.locked_until = now + self.lockout
            self._wrong.clear()
            return KeypadResult(None, why, locked_now=True, locked_until=self.locked_until)
        return KeypadResult(None, why)

    def _forget(self, now: datetime) -> None:
        while self._wrong and now - self._wrong[0] > self.wrong_window:
            self._wrong.popleft()
        self._used = {k: until for k, until in self._used.items() if until >= now}
