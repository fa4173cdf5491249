"""The agent against a real mosquitto, on gpiozero mock pins: events, door commands, exactly-once, offline."""

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from controller.devstack.services import Mosquitto
from node_agent.link import Publication
from schemas import (
    Channel,
    CommandCause,
    CommandStatus,
    DoorEvent,
    DoorResult,
    OpenCommand,
    Telemetry,
    decode,
    encode,
    topic,
)
from tests.agent_mqtt.helpers import (
    PULSE_MS,
    build_hardware,
    door_events,
    final,
    pulses,
    results,
    send_open,
    sim_profile,
    wait_online,
)
from tests.harness.agent_runner import AgentFactory
from tests.harness.mqtt import Capture, Delivered, connect

pytestmark = pytest.mark.integration

PROFILE = sim_profile()
A = PROFILE.compartments[0]
B = PROFILE.compartments[1]


def test_birth_is_retained_and_describes_the_node(mosquitto: Mosquitto, start_agent: AgentFactory) -> None:
    live = Capture(mosquitto.url, "lockers/v1/+/status")
    start_agent()
    wait_online(live)
    capture = Capture(mosquitto.url, "lockers/v1/+/status")  # subscribed after the birth
    birth = wait_online(capture)
    [delivered] = [d for d in capture.snapshot() if d.topic.endswith("/status")]
    assert delivered.retain
    assert birth.boot_id == 1
    assert [(c.id, c.size) for c in birth.compartments] == [(c.id, c.size) for c in PROFILE.compartments]
    assert birth.hardware_model == PROFILE.hardware_model
    capture.close()
    live.close()


def test_uncommanded_open_reaches_the_broker_within_100_ms(mosquitto: Mosquitto, start_agent: AgentFactory) -> None:
    hardware = build_hardware(PROFILE)
    capture = Capture(mosquitto.url, "lockers/v1/node-1/#")
    start_agent(hardware=hardware)
    wait_online(capture)
    changed_at = time.monotonic()
    hardware.pin_factory.pin(A.door_pin).drive_high()  # switch released: door open
    delivered = capture.wait_until(lambda ds: any(d.topic.endswith("/event") for d in ds))
    [event_delivery] = [d for d in delivered if d.topic.endswith("/event")]
    event = decode(Channel.EVENT, event_delivery.payload)
    assert isinstance(event, DoorEvent)
    assert (event.compartment, event.action, event.cause.type) == (A.id, "opened", "none")
    assert event.uncommanded_open
    assert event_delivery.received_at - changed_at < 0.100
    capture.close()


def test_open_on_a_working_door_is_opened_and_pulses_the_relay(mosquitto: Mosquitto, start_agent: AgentFactory) -> None:
    hardware = build_hardware(PROFILE, working_doors=(A.id,))
    capture = Capture(mosquitto.url, "lockers/v1/node-1/#")
    start_agent(hardware=hardware)
    wait_online(capture)
    send_open(mosquitto, A.id, "cmd-open-1")
    delivered = capture.wait_until(lambda ds: bool(final(ds, "cmd-open-1")))
    [result] = final(delivered, "cmd-open-1")
    assert result.status is CommandStatus.DONE
    assert result.outcome is not None
    assert result.outcome.result is DoorResult.OPENED
    assert result.outcome.switch_latency_ms is not None and result.outcome.switch_latency_ms < PULSE_MS
    [pulse] = pulses(hardware.pin_factory.pin(A.relay_pin))
    assert pulse == pytest.approx(PULSE_MS / 1000, abs=0.05)
    assert result.outcome.pulse_ms == pytest.approx(PULSE_MS, abs=50)
    events = door_events(delivered)
    assert events[0].action == "opened"
    assert events[0].cause == CommandCause(command_id="cmd-open-1")
    assert not events[0].uncommanded_open
    accepted = [r for r in results(delivered) if r.status is CommandStatus.ACCEPTED]
    assert [r.command_id for r in accepted] == ["cmd-open-1"]
    capture.close()


def test_open_on_a_jammed_door_reports_jammed(mosquitto: Mosquitto, start_agent: AgentFactory) -> None:
    hardware = build_hardware(PROFILE)  # relay not connected to the switch: the door never moves
    capture = Capture(mosquitto.url, "lockers/v1/node-1/result")
    start_agent(hardware=hardware)
    send_open(mosquitto, A.id, "cmd-jam")
    [result] = final(capture.wait_until(lambda ds: bool(final(ds, "cmd-jam"))), "cmd-jam")
    assert result.outcome is not None
    assert result.outcome.result is DoorResult.JAMMED
    assert result.outcome.switch_latency_ms is None
    [pulse] = pulses(hardware.pin_factory.pin(A.relay_pin))
    assert pulse == pytest.approx(PULSE_MS / 1000, abs=0.05)
    capture.close()


def test_open_on_an_open_door_is_already_open_without_a_pulse(mosquitto: Mosquitto, start_agent: AgentFactory) -> None:
    hardware = build_hardware(PROFILE, working_doors=(A.id,))
    hardware.pin_factory.pin(A.door_pin).drive_high()
    capture = Capture(mosquitto.url, "lockers/v1/node-1/result")
    start_agent(hardware=hardware)
    send_open(mosquitto, A.id, "cmd-already")
    [result] = final(capture.wait_until(lambda ds: bool(final(ds, "cmd-already"))), "cmd-already")
    assert result.outcome is not None
    assert (result.outcome.result, result.outcome.pulse_ms) == (DoorResult.ALREADY_OPEN, 0)
    assert pulses(hardware.pin_factory.pin(A.relay_pin)) == []
    capture.close()


def test_same_command_twice_fires_once_and_answers_duplicate(mosquitto: Mosquitto, start_agent: AgentFactory) -> None:
    hardware = build_hardware(PROFILE, working_doors=(A.id,))
    capture = Capture(mosquitto.url, "lockers/v1/node-1/result")
    start_agent(hardware=hardware)
    send_open(mosquitto, A.id, "cmd-twice")
    capture.wait_until(lambda ds: bool(final(ds, "cmd-twice")))
    send_open(mosquitto, A.id, "cmd-twice")
    first, second = final(capture.wait_until(lambda ds: len(final(ds, "cmd-twice")) >= 2), "cmd-twice")
    assert first.status is CommandStatus.DONE
    assert second.status is CommandStatus.DUPLICATE
    assert second.outcome == first.outcome
    assert second.detail == "first answered done"
    time.sleep(PULSE_MS / 1000 * 2)
    assert len(pulses(hardware.pin_factory.pin(A.relay_pin))) == 1
    capture.close()


def test_expired_command_is_never_executed(mosquitto: Mosquitto, start_agent: AgentFactory) -> None:
    hardware = build_hardware(PROFILE, working_doors=(A.id,))
    capture = Capture(mosquitto.url, "lockers/v1/node-1/result")
    start_agent(hardware=hardware)
    send_open(mosquitto, A.id, "cmd-late", ttl_s=-0.5)
    [result] = final(capture.wait_until(lambda ds: bool(final(ds, "cmd-late"))), "cmd-late")
    assert result.status is CommandStatus.EXPIRED
    assert result.outcome is None
    assert pulses(hardware.pin_factory.pin(A.relay_pin)) == []
    assert hardware.pin_factory.pin(A.relay_pin).states[-1].state is False
    capture.close()


def test_bad_commands_are_kept_and_do_not_stop_good_ones(mosquitto: Mosquitto, start_agent: AgentFactory) -> None:
    hardware = build_hardware(PROFILE, working_doors=(B.id,))
    capture = Capture(mosquitto.url, "lockers/v1/node-1/result")
    agent = start_agent(hardware=hardware)
    publisher = connect(mosquitto.url)
    command_topic = topic("node-1", Channel.COMMAND)
    for garbage in (b"\xff\x00 not json", b'{"schema_version": 1, "type": "open"}'):
        publisher.publish(command_topic, garbage, qos=1).wait_for_publish(5)
    publisher.disconnect()
    send_open(mosquitto, "Z9", "cmd-nowhere")
    send_open(mosquitto, B.id, "cmd-good")
    delivered = capture.wait_until(lambda ds: bool(final(ds, "cmd-good")))
    [nowhere] = final(delivered, "cmd-nowhere")
    assert nowhere.status is CommandStatus.REJECTED
    assert nowhere.detail is not None and "no compartment 'Z9'" in nowhere.detail
    [good] = final(delivered, "cmd-good")
    assert good.outcome is not None and good.outcome.result is DoorResult.OPENED
    kept = agent.call(agent.agent.journal.rejected)
    assert sorted(r.reason for r in kept) == ["invalid", "malformed"]
    assert {r.payload for r in kept} == {b"\xff\x00 not json", b'{"schema_version": 1, "type": "open"}'}
    capture.close()


def test_offline_messages_arrive_in_order_after_the_broker_returns(
    mosquitto: Mosquitto, start_agent: AgentFactory
) -> None:
    hardware = build_hardware(PROFILE)
    capture = Capture(mosquitto.url, "lockers/v1/node-1/#", client_id="test-observer")
    start_agent(hardware=hardware, telemetry_interval_s=0.05)
    wait_online(capture)
    mosquitto.stop()
    door = hardware.pin_factory.pin(A.door_pin)
    for _ in range(3):
        time.sleep(0.1)
        door.drive_high()
        time.sleep(0.05)
        door.drive_low()
    time.sleep(0.3)
    mosquitto.start()
    delivered = capture.wait_until(
        lambda ds: (
            sum(1 for d in ds if d.topic.endswith("/event")) >= 6
            and any(d.topic.endswith("/telemetry") and not decode(Channel.TELEMETRY, d.payload).replayed for d in ds)
        ),
        timeout_s=15,
    )
    messages = [
        decode(Channel.TELEMETRY if d.topic.endswith("/telemetry") else Channel.EVENT, d.payload)
        for d in delivered
        if d.topic.endswith(("/telemetry", "/event"))
    ]
    seqs = list(dict.fromkeys(m.seq for m in messages))  # first delivery of each; QoS 1 may repeat
    assert seqs == sorted(seqs)
    events = [m for m in messages if isinstance(m, DoorEvent)]
    assert [e.action for e in dict((e.seq, e) for e in events).values()] == ["opened", "closed"] * 3
    assert all(e.replayed for e in events)
    replayed_telemetry = {m.seq for m in messages if isinstance(m, Telemetry) and m.replayed}
    assert len(replayed_telemetry) >= 5
    capture.close()


def test_tiny_outbox_drops_counted_telemetry_and_no_event(mosquitto: Mosquitto, start_agent: AgentFactory) -> None:
    hardware = build_hardware(PROFILE)
    capture = Capture(mosquitto.url, "lockers/v1/node-1/#", client_id="test-observer")
    runner = start_agent(hardware=hardware, telemetry_interval_s=0.03, outbox_capacity=4)
    first = wait_online(capture)
    status_seqs = {first.seq, first.seq + 1}  # the birth and the will registered with it
    link = runner.agent.link
    build_status = link._connection_status

    def recorded() -> tuple[Publication, Publication]:  # every connect attempt takes a birth and a will
        birth, will = build_status()
        status_seqs.update(decode(Channel.STATUS, m.payload).seq for m in (birth, will))
        return birth, will

    link._connection_status = recorded
    mosquitto.stop()
    door = hardware.pin_factory.pin(A.door_pin)
    for _ in range(4):
        door.drive_high()
        time.sleep(0.1)
        door.drive_low()
        time.sleep(0.1)
    mosquitto.start()

    def telemetry(ds: list[Delivered]) -> list[Telemetry]:
        return [decode(Channel.TELEMETRY, d.payload) for d in ds if d.topic.endswith("/telemetry")]

    def events_of(ds: list[Delivered]) -> dict[int, DoorEvent]:
        return {e.seq: e for e in door_events(ds)}

    def settled(ds: list[Delivered]) -> bool:
        events = events_of(ds)
        return len(events) >= 8 and any(not t.replayed and t.seq > max(events) for t in telemetry(ds))

    delivered = capture.wait_until(settled, timeout_s=15)
    events = events_of(delivered)
    assert [e.action for e in events.values()] == ["opened", "closed"] * 4
    samples = {t.seq: t for t in telemetry(delivered)}
    live = next(t for t in samples.values() if not t.replayed and t.seq > max(events))
    delivered_before = sum(1 for s in samples if s < live.seq)
    emitted_before = sum(1 for s in range(live.seq) if s not in events and s not in status_seqs)
    assert live.outbox_dropped > 0
    assert delivered_before + live.outbox_dropped == emitted_before
    capture.close()


def test_stopping_mid_command_releases_the_relay_and_the_restart_reports_unknown(
    mosquitto: Mosquitto, start_agent: AgentFactory, tmp_path: Path
) -> None:
    profile = sim_profile(pulse_ms=5000, door_timeout_ms=5000)
    hardware = build_hardware(profile)
    capture = Capture(mosquitto.url, "lockers/v1/node-1/result")
    agent = start_agent(hardware=hardware, data_dir=tmp_path / "node-1")
    send_open(mosquitto, A.id, "cmd-stop")
    capture.wait_until(lambda ds: any(r.status is CommandStatus.ACCEPTED for r in results(ds)))
    relay = hardware.pin_factory.pin(A.relay_pin)
    assert relay.state is True
    agent.halt()
    assert relay.state is False  # released by the agent's own shutdown, before its hardware is closed
    agent.stop()
    start_agent(hardware=build_hardware(profile), data_dir=tmp_path / "node-1")
    [result] = final(capture.wait_until(lambda ds: bool(final(ds, "cmd-stop"))), "cmd-stop")
    assert result.status is CommandStatus.UNKNOWN
    capture.close()


def test_a_command_sent_in_answer_to_the_first_birth_is_not_lost(
    mosquitto: Mosquitto, start_agent: AgentFactory
) -> None:
    """The controller answers a birth at once (the node's code key); on a brand-new session that command must still
    arrive, so the agent subscribes before it announces itself."""
    answered: list[str] = []
    responder = connect(mosquitto.url)

    def answer(client: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        if not message.payload or answered:
            return
        now = datetime.now(UTC)
        command = OpenCommand(
            command_id="answer-to-birth",
            node_id="node-1",
            issued_at=now,
            expires_at=now + timedelta(seconds=30),
            compartment=A.id,
        )
        client.publish(topic("node-1", Channel.COMMAND), encode(command), qos=1)
        answered.append(command.command_id)

    responder.on_message = answer
    responder.subscribe(topic("node-1", Channel.STATUS), qos=1)
    capture = Capture(mosquitto.url, "lockers/v1/node-1/result")
    time.sleep(0.2)  # both subscriptions in place
    start_agent(hardware=build_hardware(PROFILE, working_doors=(A.id,)))
    delivered = capture.wait_until(lambda ds: bool(final(ds, "answer-to-birth")), 10)
    assert answered == ["answer-to-birth"]
    [result] = final(delivered, "answer-to-birth")
    assert result.status == CommandStatus.DONE
    responder.disconnect()
    capture.close()
