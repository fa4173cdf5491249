"""Reservations at the node against a real broker: the ledger decides, codes work offline, events replay in order."""

import time
from datetime import UTC, datetime, timedelta

import pytest

from controller.devstack.services import Mosquitto
from node_agent.keypad import KeypadRefusal
from schemas import (
    CancelCommand,
    Channel,
    CommandStatus,
    KeypadEvent,
    LedgerEvent,
    LedgerTransition,
    ProvisionKeyCommand,
    ReservationStep,
    ReserveCommand,
    decode,
    topic,
)
from schemas.codes import CodePurpose, node_key, offline_code
from schemas.command_trust import sign_command
from tests.agent_mqtt.helpers import build_hardware, door_events, final, pulses, send_command, send_open, sim_profile
from tests.harness.agent_runner import AgentFactory, AgentThread
from tests.harness.mqtt import Capture, Delivered
from tests.samples import COMMAND_KEY

pytestmark = pytest.mark.integration

PROFILE = sim_profile()
A1, A2 = PROFILE.compartments[0], PROFILE.compartments[1]
SECRET = b"test controller secret"


def reserve(mosquitto: Mosquitto, reservation: str, compartment: str, command_id: str, hold_s: float = 600) -> None:
    now = datetime.now(UTC)
    send_command(
        mosquitto,
        ReserveCommand(
            command_id=command_id,
            node_id="node-1",
            issued_at=now - timedelta(seconds=1),
            expires_at=now + timedelta(seconds=30),
            reservation_id=reservation,
            compartment=compartment,
            opens_at=now - timedelta(seconds=1),
            hold_until=now + timedelta(seconds=hold_s),
            pickup_until=now + timedelta(days=2),
        ),
    )


def ledger_events(deliveries: list[Delivered]) -> list[LedgerEvent]:
    events = [decode(Channel.EVENT, d.payload) for d in deliveries if d.topic.endswith("/event")]
    return [e for e in events if isinstance(e, LedgerEvent)]


def answer(results: Capture, command_id: str) -> CommandStatus:
    delivered = results.wait_until(lambda ds: bool(final(ds, command_id)))
    [result] = final(delivered, command_id)
    return result.status


def test_the_ledger_decides_holds_opens_and_cancels(mosquitto: Mosquitto, start_agent: AgentFactory) -> None:
    hardware = build_hardware(PROFILE, working_doors=(A1.id, A2.id))
    start_agent("node-1", hardware)
    results = Capture(mosquitto.url, topic("node-1", Channel.RESULT))
    events = Capture(mosquitto.url, topic("node-1", Channel.EVENT))

    reserve(mosquitto, "res-1", A1.id, "c1")
    assert answer(results, "c1") is CommandStatus.DONE
    reserve(mosquitto, "res-2", A1.id, "c2")  # the same compartment for someone else: never double-booked
    assert answer(results, "c2") is CommandStatus.REJECTED
    send_open(mosquitto, A1.id, "c3")  # a service open of a held compartment
    assert answer(results, "c3") is CommandStatus.REJECTED
    assert pulses(hardware.pin_factory.pin(A1.relay_pin)) == []

    send_open(mosquitto, A1.id, "c4", reservation_id="res-1", step=ReservationStep.DEPOSIT)  # the courier's deposit
    assert answer(results, "c4") is CommandStatus.DONE
    send_open(mosquitto, A1.id, "c4b", reservation_id="res-1", step=ReservationStep.DEPOSIT)  # a second deposit
    assert answer(results, "c4b") is CommandStatus.REJECTED  # never taken as the pickup
    send_open(mosquitto, A1.id, "c5", reservation_id="res-1", step=ReservationStep.PICKUP)  # the recipient's pickup
    assert answer(results, "c5") is CommandStatus.DONE
    assert len(pulses(hardware.pin_factory.pin(A1.relay_pin))) == 2

    reserve(mosquitto, "res-3", A2.id, "c6")
    send_command(
        mosquitto,
        CancelCommand(
            command_id="c7",
            node_id="node-1",
            issued_at=datetime.now(UTC) - timedelta(seconds=1),
            expires_at=datetime.now(UTC) + timedelta(seconds=30),
            reservation_id="res-3",
        ),
    )
    assert answer(results, "c7") is CommandStatus.DONE
    delivered = events.wait_until(lambda ds: len(ledger_events(ds)) >= 5)
    assert [(e.transition, e.reservation_id, e.via) for e in ledger_events(delivered)] == [
        (LedgerTransition.HELD, "res-1", "command"),
        (LedgerTransition.DEPOSITED, "res-1", "command"),
        (LedgerTransition.PICKED_UP, "res-1", "command"),
        (LedgerTransition.HELD, "res-3", "command"),
        (LedgerTransition.CANCELLED, "res-3", "command"),
    ]


def test_a_hold_expires_at_the_node_by_itself(mosquitto: Mosquitto, start_agent: AgentFactory) -> None:
    start_agent("node-1", build_hardware(PROFILE))
    events = Capture(mosquitto.url, topic("node-1", Channel.EVENT))
    reserve(mosquitto, "res-short", A1.id, "c1", hold_s=1)
    delivered = events.wait_until(lambda ds: len(ledger_events(ds)) >= 2, timeout_s=10)
    assert [(e.transition, e.via) for e in ledger_events(delivered)] == [
        (LedgerTransition.HELD, "command"),
        (LedgerTransition.HOLD_EXPIRED, "timer"),
    ]


def code(purpose: CodePurpose, compartment: str, reservation: str, start: datetime, end: datetime) -> str:
    return offline_code(node_key(SECRET, "node-1"), purpose, "node-1", compartment, reservation, start, end)


def test_offline_pickup_code_opens_the_right_compartment_once_and_wrong_codes_lock_the_keypad(
    mosquitto: Mosquitto, start_agent: AgentFactory
) -> None:
    hardware = build_hardware(PROFILE, working_doors=(A1.id, A2.id))
    agent: AgentThread = start_agent("node-1", hardware)
    results = Capture(mosquitto.url, topic("node-1", Channel.RESULT))
    events = Capture(mosquitto.url, topic("node-1", Channel.EVENT), client_id="event-watcher")
    now = datetime.now(UTC)
    provision = ProvisionKeyCommand(
        command_id="k1",
        node_id="node-1",
        issued_at=now - timedelta(seconds=1),
        expires_at=now + timedelta(seconds=30),
        key_hex=node_key(SECRET, "node-1").hex(),
    )
    send_command(mosquitto, sign_command(provision, COMMAND_KEY))
    assert answer(results, "k1") is CommandStatus.DONE
    reserve(mosquitto, "res-9", A1.id, "c1")
    send_open(mosquitto, A1.id, "c2", reservation_id="res-9", step=ReservationStep.DEPOSIT)  # deposited while online
    assert answer(results, "c2") is CommandStatus.DONE
    slot = agent.agent.ledger.slots[A1.id]
    assert slot.window is not None
    window = slot.window

    events.close()  # the watcher's session keeps collecting on the broker while it is away
    mosquitto.stop()  # the network is gone
    pickup = code(CodePurpose.PICKUP, A1.id, "res-9", window.opens_at, window.pickup_until)
    wrong_compartment = code(CodePurpose.PICKUP, A2.id, "res-9", window.opens_at, window.pickup_until)
    outside = code(CodePurpose.PICKUP, A1.id, "res-9", window.opens_at, window.pickup_until + timedelta(days=1))

    assert agent.await_(agent.agent.enter_code(wrong_compartment)).refused is KeypadRefusal.WRONG
    assert agent.await_(agent.agent.enter_code(outside)).refused is KeypadRefusal.WRONG
    opened = agent.await_(agent.agent.enter_code(pickup))
    assert opened.grant is not None and opened.grant.compartment == A1.id
    assert agent.await_(agent.agent.enter_code(pickup)).refused is KeypadRefusal.USED  # one use only
    assert len(pulses(hardware.pin_factory.pin(A1.relay_pin))) == 2  # the deposit, then the code pickup
    assert pulses(hardware.pin_factory.pin(A2.relay_pin)) == []
    for i in range(5):  # wrong codes starting like the pickup code: the fifth of that scope locks it
        last = agent.await_(agent.agent.enter_code(f"{pickup[0]}{i:07d}"))
        if last.locked_now:
            break
    assert last.locked_now
    assert agent.await_(agent.agent.enter_code(pickup)).refused is KeypadRefusal.LOCKED

    mosquitto.start()
    events = Capture(mosquitto.url, topic("node-1", Channel.EVENT), client_id="event-watcher")
    delivered = events.wait_until(
        lambda ds: any(isinstance(decode(Channel.EVENT, d.payload), KeypadEvent) for d in ds), timeout_s=20
    )
    ledger = [(e.transition, e.via, e.replayed) for e in ledger_events(delivered)]
    assert (LedgerTransition.PICKED_UP, "code", True) in ledger
    door = [e for e in door_events(delivered) if e.action == "opened"]
    assert door[-1].cause.type == "code"
    keypad = [decode(Channel.EVENT, d.payload) for d in delivered if b'"keypad"' in d.payload]
    assert isinstance(keypad[0], KeypadEvent) and (keypad[0].wrong_attempts, keypad[0].scope) == (5, pickup[0])
    seqs = [decode(Channel.EVENT, d.payload).seq for d in delivered]
    assert seqs == sorted(seqs)  # replayed in order
    time.sleep(0.1)
    assert agent.agent.ledger.slots[A1.id].reservation_id is None
