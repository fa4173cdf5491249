"""Helpers for agent tests: send commands, read results and births, inspect relay pulses on mock pins."""

import itertools
import random
from datetime import UTC, datetime, timedelta

from gpiozero.pins.mock import MockConnectedPin, MockFactory, MockPin

from controller.devstack.services import Mosquitto
from node_agent.board import BoardProfile, default_sim_profile
from node_agent.hardware import Hardware
from node_agent.sim.physics import BatteryModel, ThermalModel
from schemas import (
    Channel,
    Command,
    CommandResult,
    CommandStatus,
    DoorEvent,
    OpenCommand,
    PowerSource,
    ReservationStep,
    StatusBirth,
    decode,
    encode,
    topic,
)
from tests.harness.mqtt import Capture, Delivered, connect

PULSE_MS = 120
DOOR_TIMEOUT_MS = 400


def sim_profile(**changes: object) -> BoardProfile:
    """The shipped simulated board with short, test-friendly timings."""
    return default_sim_profile().model_copy(
        update={"pulse_ms": PULSE_MS, "door_timeout_ms": DOOR_TIMEOUT_MS, **changes}
    )


def build_hardware(profile: BoardProfile, working_doors: tuple[str, ...] = ()) -> Hardware:
    """Hardware on a fresh MockFactory; doors listed in ``working_doors`` are wired to open when their relay fires.

    A working door's relay pin is gpiozero's ``MockConnectedPin`` driving the door switch pin; all doors start closed.
    """
    factory = MockFactory()
    for pins in profile.compartments:
        if pins.id in working_doors:
            factory.pin(pins.relay_pin, pin_class=MockConnectedPin, input_pin=factory.pin(pins.door_pin))
    rng = random.Random(7)
    hardware = Hardware(
        profile,
        pin_factory=factory,
        battery=BatteryModel(
            capacity_wh=500,
            load_w=5,
            charge_w=50,
            power_source=PowerSource.BATTERY,
            soc_pct=80,
            cycle_count=3,
        ),
        temperature=ThermalModel(mean_c=20, amplitude_c=5, noise_c=0.1, rng=rng),
    )
    for pins in profile.compartments:
        factory.pin(pins.door_pin).drive_low()  # switch pressed: door closed
    return hardware


def results(deliveries: list[Delivered]) -> list[CommandResult]:
    return [decode(Channel.RESULT, d.payload) for d in deliveries if d.topic.endswith("/result")]


def final(deliveries: list[Delivered], command_id: str) -> list[CommandResult]:
    return [r for r in results(deliveries) if r.command_id == command_id and r.status != CommandStatus.ACCEPTED]


def send_open(
    mosquitto: Mosquitto,
    compartment: str,
    command_id: str,
    node_id: str = "node-1",
    ttl_s: float = 30,
    reservation_id: str | None = None,
    step: ReservationStep | None = None,
) -> None:
    now = datetime.now(UTC)
    command = OpenCommand(
        command_id=command_id,
        node_id=node_id,
        issued_at=now - timedelta(seconds=1),
        expires_at=now + timedelta(seconds=ttl_s),
        compartment=compartment,
        reservation_id=reservation_id,
        step=step,
    )
    send_command(mosquitto, command)


def send_command(mosquitto: Mosquitto, command: Command) -> None:
    """Publish any command on its node's command topic (QoS 1) and wait until the broker has it."""
    publisher = connect(mosquitto.url)
    publisher.publish(topic(command.node_id, Channel.COMMAND), encode(command), qos=1).wait_for_publish(5)
    publisher.disconnect()


def pulses(pin: MockPin) -> list[float]:
    """Durations (s) the pin spent high, from gpiozero's mock state history."""
    states = pin.states
    return [nxt.timestamp for cur, nxt in itertools.pairwise(states) if cur.state and not nxt.state]


def door_events(deliveries: list[Delivered]) -> list[DoorEvent]:
    """The door events among ``deliveries`` (ledger and keypad events are left out)."""
    events = [decode(Channel.EVENT, d.payload) for d in deliveries if d.topic.endswith("/event")]
    return [e for e in events if isinstance(e, DoorEvent)]


def births(deliveries: list[Delivered], node_id: str = "node-1") -> list[StatusBirth]:
    status = [decode(Channel.STATUS, d.payload) for d in deliveries if d.topic == topic(node_id, Channel.STATUS)]
    return [s for s in status if isinstance(s, StatusBirth)]


def wait_online(capture: Capture, node_id: str = "node-1", boot_id: int = 1) -> StatusBirth:
    """Wait for the node's birth of ``boot_id`` on ``capture`` and return it."""
    delivered = capture.wait_until(lambda ds: any(b.boot_id == boot_id for b in births(ds, node_id)))
    matching = [b for b in births(delivered, node_id) if b.boot_id == boot_id]
    assert matching, f"no birth of boot {boot_id} from {node_id}"
    return matching[-1]
