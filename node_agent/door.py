"""The open procedure: pulse a lock relay, watch the door switch, report what the door physically did.

A command acknowledged is not a door opened: the outcome is ``opened`` only when the switch changed within the
timeout, ``already_open`` when the door was open before the pulse (no pulse), and ``jammed`` when the relay fired
but the switch never moved.
"""

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

from schemas import DoorOutcome, DoorResult


class Lock(Protocol):
    """What the procedure needs of a compartment: its door switch and its relay."""

    id: str

    def door_is_open(self) -> bool:
        """Door switch reading."""
        ...

    def relay_on(self) -> None:
        """Energise the lock relay (unlock)."""
        ...

    def relay_off(self) -> None:
        """Release the lock relay."""
        ...


async def open_compartment(
    lock: Lock,
    door_opened: asyncio.Event,
    pulse_s: float,
    timeout_s: float,
    monotonic: Callable[[], float] = time.monotonic,
) -> DoorOutcome:
    """Pulse the relay for ``pulse_s`` and wait up to ``timeout_s`` for ``door_opened`` (set by the switch edge)."""
    if lock.door_is_open():
        return DoorOutcome(compartment=lock.id, result=DoorResult.ALREADY_OPEN, pulse_ms=0)
    loop = asyncio.get_running_loop()
    door_opened.clear()
    started = monotonic()
    lock.relay_on()
    released_at: list[float] = []

    def release() -> None:
        if not released_at:
            lock.relay_off()
            released_at.append(monotonic())

    handle = loop.call_later(pulse_s, release)
    latency_s: float | None = None
    try:
        await asyncio.wait_for(door_opened.wait(), timeout_s)
        latency_s = monotonic() - started
        await asyncio.sleep(max(0.0, started + pulse_s - monotonic()))
    except TimeoutError:
        pass
    finally:
        handle.cancel()
        release()
    pulse_ms = round((released_at[0] - started) * 1000)
    if latency_s is None:
        return DoorOutcome(compartment=lock.id, result=DoorResult.JAMMED, pulse_ms=pulse_ms)
    return DoorOutcome(
        compartment=lock.id,
        result=DoorResult.OPENED,
        pulse_ms=pulse_ms,
        switch_latency_ms=round(latency_s * 1000),
    )
