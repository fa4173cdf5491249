"""The open procedure on gpiozero mock pins: what the relay did and what the door did."""

import asyncio
import itertools

import pytest
from gpiozero.pins.mock import MockConnectedPin, MockFactory

from node_agent.board import default_sim_profile
from node_agent.door import open_compartment
from node_agent.hardware import Compartment
from schemas import DoorOutcome, DoorResult

PULSE_S = 0.06
TIMEOUT_S = 0.2
PINS = default_sim_profile().compartments[0]


def compartment(*, working: bool, door_open: bool = False) -> tuple[Compartment, MockFactory]:
    factory = MockFactory()
    if working:
        factory.pin(PINS.relay_pin, pin_class=MockConnectedPin, input_pin=factory.pin(PINS.door_pin))
    lock = Compartment(PINS, relay_active_high=True, factory=factory)
    door = factory.pin(PINS.door_pin)
    door.drive_high() if door_open else door.drive_low()
    return lock, factory


async def _open(lock: Compartment) -> DoorOutcome:
    opened = asyncio.Event()
    lock.door.when_deactivated = opened.set  # the agent wires this through its loop; here we share one thread
    return await open_compartment(lock, opened, PULSE_S, TIMEOUT_S)


def relay_high_durations(factory: MockFactory) -> list[float]:
    states = factory.pin(PINS.relay_pin).states
    return [b.timestamp for a, b in itertools.pairwise(states) if a.state and not b.state]


def test_working_door_opens_within_the_pulse() -> None:
    lock, factory = compartment(working=True)
    outcome = asyncio.run(_open(lock))
    assert outcome.result is DoorResult.OPENED
    assert outcome.switch_latency_ms is not None and outcome.switch_latency_ms < PULSE_S * 1000
    [pulse] = relay_high_durations(factory)
    assert pulse == pytest.approx(PULSE_S, abs=0.03)
    assert not lock.relay_is_on()


def test_jammed_door_releases_the_relay_after_the_pulse_and_waits_for_the_timeout() -> None:
    lock, factory = compartment(working=False)
    outcome = asyncio.run(_open(lock))
    assert outcome.result is DoorResult.JAMMED
    assert outcome.switch_latency_ms is None
    [pulse] = relay_high_durations(factory)
    assert pulse == pytest.approx(PULSE_S, abs=0.03)  # not held for the whole door timeout
    assert outcome.pulse_ms == pytest.approx(PULSE_S * 1000, abs=30)


def test_open_door_is_reported_already_open_and_never_pulsed() -> None:
    lock, factory = compartment(working=True, door_open=True)
    outcome = asyncio.run(_open(lock))
    assert (outcome.result, outcome.pulse_ms) == (DoorResult.ALREADY_OPEN, 0)
    assert relay_high_durations(factory) == []
    assert [s.state for s in factory.pin(PINS.relay_pin).states] == [False]


def test_cancelled_procedure_still_releases_the_relay() -> None:
    lock, _ = compartment(working=False)

    async def cancel_midway() -> None:
        task = asyncio.create_task(_open(lock))
        await asyncio.sleep(PULSE_S / 3)
        assert lock.relay_is_on()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_midway())
    assert not lock.relay_is_on()
