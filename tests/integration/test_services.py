"""The fixtures run real services: a message goes through mosquitto and comes back out of InfluxDB."""

from datetime import timedelta
from pathlib import Path

import pytest

from controller.devstack.services import Influxd, Mosquitto, ServiceError, find_binary
from controller.influx.lineproto import event_line, keypad_line, ledger_line, ns, result_line, telemetry_line
from schemas import Channel, Telemetry, decode_message, encode, topic
from tests import samples
from tests.harness.influx import InfluxClient
from tests.harness.mqtt import Capture, connect

pytestmark = pytest.mark.integration


def test_telemetry_published_to_the_broker_is_read_back_from_influxdb(
    mosquitto: Mosquitto, influx: InfluxClient
) -> None:
    capture = Capture(mosquitto.url, "lockers/v1/+/telemetry")
    publisher = connect(mosquitto.url)
    sent = [
        samples.telemetry(node_id="node-7", seq=i, soc=50 + i, ts=samples.T0 + timedelta(seconds=i)) for i in range(3)
    ]
    for message in sent:
        publisher.publish(topic("node-7", Channel.TELEMETRY), encode(message), qos=1).wait_for_publish(5)
    delivered = capture.wait_for(3)
    assert [d.topic for d in delivered] == ["lockers/v1/node-7/telemetry"] * 3

    lines: list[str] = []
    for d in delivered:
        _, decoded = decode_message(d.topic, d.payload)
        assert isinstance(decoded, Telemetry)
        lines.append(telemetry_line(decoded))
    influx.write(lines)

    rows = influx.query("SELECT soc_pct, seq, power_source FROM telemetry WHERE node = 'node-7'")
    assert [(r["soc_pct"], r["seq"], r["power_source"]) for r in rows] == [
        (50, 0, "battery"),
        (51, 1, "battery"),
        (52, 2, "battery"),
    ]
    assert [r["time"] for r in rows] == [ns(m.ts) for m in sent]
    doors = influx.query("SELECT doors_open, unlocked FROM telemetry WHERE node = 'node-7'")
    assert [(r["doors_open"], r["unlocked"]) for r in doors] == [(1, 1)] * 3
    publisher.disconnect()
    capture.close()


def test_redelivered_points_overwrite_instead_of_duplicating(influx: InfluxClient) -> None:
    message = samples.telemetry(seq=9)
    influx.write([telemetry_line(message)])
    influx.write([telemetry_line(message)])
    influx.write([event_line(samples.door_event()), result_line(samples.open_result())])
    influx.write([event_line(samples.door_event())])
    assert influx.count("telemetry") == 1
    assert influx.count("event") == 1
    rows = influx.query('SELECT command_id, switch_latency_ms, "status", "result" FROM command_result')
    assert [(r["command_id"], r["switch_latency_ms"], r["status"], r["result"]) for r in rows] == [
        ("cmd-42", 180, "done", "opened")
    ]


def test_retained_status_survives_a_broker_restart_on_the_same_port(mosquitto: Mosquitto) -> None:
    publisher = connect(mosquitto.url)
    publisher.publish(
        topic("node-3", Channel.STATUS), encode(samples.birth("node-3")), qos=1, retain=True
    ).wait_for_publish(5)
    publisher.disconnect()
    port = mosquitto.port
    mosquitto.restart()
    assert mosquitto.port == port
    capture = Capture(mosquitto.url, "lockers/v1/+/status")
    [delivered] = capture.wait_for(1)
    assert delivered.retain
    assert decode_message(delivered.topic, delivered.payload)[1] == samples.birth("node-3")
    capture.close()


def test_missing_binary_names_the_debian_package() -> None:
    with pytest.raises(ServiceError, match=r"install the Debian package 'no-such-pkg'"):
        find_binary("no-such-binary-lockerfleet", "no-such-pkg")


def test_a_taken_port_is_refused_instead_of_probing_the_wrong_server(tmp_path: Path, influxd: Influxd) -> None:
    clash = Influxd(tmp_path / "clash", port=influxd.port)
    with pytest.raises(ServiceError, match=f"influxd cannot listen on 127.0.0.1:{influxd.port}: the port is taken"):
        clash.start()
    assert not clash.running


def test_a_service_that_dies_at_start_shows_its_log(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "bad", extra_config="this_is_not_an_option 1")
    with pytest.raises(ServiceError, match=r"mosquitto exited with \d+: .*this_is_not_an_option"):
        broker.start()


def test_ledger_and_keypad_events_are_stored_with_low_cardinality_tags(influx: InfluxClient) -> None:
    influx.write([ledger_line(samples.ledger_event()), keypad_line(samples.keypad_event())])
    [ledger] = influx.query('SELECT reservation_id, "transition", via, compartment FROM ledger')
    assert (ledger["reservation_id"], ledger["transition"], ledger["via"], ledger["compartment"]) == (
        "res-1",
        "picked_up",
        "code",
        "A1",
    )
    [keypad] = influx.query("SELECT wrong_attempts, locked_until FROM keypad")
    assert keypad["wrong_attempts"] == 10
    assert keypad["locked_until"] == ns(samples.keypad_event().locked_until)
