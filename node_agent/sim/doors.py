"""Door physics on gpiozero mock pins: a door opens shortly after its relay fires (unless jammed) and closes later.

The relay output is a :class:`RelayPin`, a gpiozero ``MockPin`` that reports its changes, so nothing polls. Timing
goes through an injected ``schedule(delay_s, fn)`` (the simulator passes ``loop.call_later``).
"""

import random
from collections.abc import Callable
from typing import Any

from gpiozero.pins.mock import MockPin

Schedule = Callable[[float, Callable[[], None]], object]


class RelayPin(MockPin):  # type: ignore[misc]  # gpiozero is untyped
    """A mock output pin that calls ``on_change(state)`` whenever its state changes."""

    def __init__(self, factory: Any, info: Any) -> None:
        super().__init__(factory, info)
        self.on_change: Callable[[bool], None] | None = None
        self.welded: bool | None = None
        """A relay fault: the contacts stuck at this state whatever is driven (``None``: a working relay)."""

    def _change_state(self, value: bool) -> bool:
        value = value if self.welded is None else self.welded
        changed: bool = super()._change_state(value)
        if changed and self.on_change is not None:
            self.on_change(value)
        return changed


class DoorPhysics:
    """Moves one compartment's door switch pin in response to its relay pin.

    Faults set :attr:`jammed` (a sticky latch), :attr:`wear_s` (each opening reaches the switch that much later than
    the one before, up to :attr:`max_extra_s`) and :attr:`held` (a door left open), weld the relay
    (:meth:`weld_relay`) and call :meth:`force_open` (an intruder).
    """

    def __init__(
        self,
        relay: RelayPin,
        door: MockPin,
        relay_active_high: bool,
        rng: random.Random,
        schedule: Schedule,
        jammed: bool,
        dwell_mean_s: float,
    ) -> None:
        self.door = door
        self.jammed = jammed
        self._active = relay_active_high
        self._rng = rng
        self._schedule = schedule
        self._dwell_mean_s = dwell_mean_s
        self._opening = False
        self.wear_s = 0.0
        self.extra_s = 0.0
        """Added to every opening's delay; grows by ``wear_s`` per opening."""
        self.max_extra_s = 2.0
        self.held = False
        """Left open: once open, the door stays open until :meth:`let_close`."""
        self._relay = relay
        self.relay_welded = False
        """Set by :meth:`weld_relay`."""
        relay.on_change = self._relay_changed
        door.drive_low()  # switch pressed: doors start closed

    @property
    def is_open(self) -> bool:
        """True while the door switch pin is released (high)."""
        return bool(self.door.state)

    def weld_relay(self, welded: bool) -> None:
        """A relay fault: contacts welded energised (the lock reads unlocked; nobody pulls the door, so it stays
        shut), or the relay replaced (released: locked)."""
        self.relay_welded = welded
        self._relay.welded = self._active if welded else None
        self._relay.state = self._active if welded else not self._active

    def let_close(self) -> None:
        """The door is no longer held: an open door closes now."""
        self.held = False
        if self.is_open and not self._opening:
            self.door.drive_low()

    def _relay_changed(self, state: bool) -> None:
        if state != self._active or self.jammed or self.is_open or self._opening or self.relay_welded:
            return
        self._opening = True
        self._schedule(self._rng.uniform(0.05, 0.3) + self.extra_s, self._open)
        self.extra_s = min(self.extra_s + self.wear_s, self.max_extra_s)

    def force_open(self) -> None:
        """The door pulled open with the lock closed (no relay): the switch opens, the door closes after a dwell."""
        if not self.is_open and not self._opening:
            self._open()

    def _open(self) -> None:
        self._opening = False
        self.door.drive_high()
        self._schedule(self._rng.expovariate(1 / self._dwell_mean_s), self._close)

    def _close(self) -> None:
        if not self.held:
            self.door.drive_low()
