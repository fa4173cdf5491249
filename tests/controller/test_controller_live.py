"""The controller against real mosquitto, InfluxDB and agents on gpiozero mock pins."""

import json
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from controller.devstack.services import Mosquitto
from node_agent.board import shipped_profile
from node_agent.settings import SimSettings
from node_agent.sim.fleet import background_fleet
from schemas import Channel, CommandStatus, encode, topic
from tests import samples
from tests.agent_mqtt.helpers import PULSE_MS, build_hardware, final, pulses, sim_profile
from tests.harness.agent_runner import AgentFactory
from tests.harness.controller_runner import ControllerFactory, ControllerThread
from tests.harness.influx import InfluxClient
from tests.harness.mqtt import Capture, connect, wait_until

pytestmark = pytest.mark.integration

PROFILE = sim_profile()


def node_state(controller: ControllerThread, node_id: str) -> str | None:
    response = controller.http.get(f"/v1/nodes/{node_id}")
    return str(response.json()["state"]) if response.status_code == 200 else None


def metric(controller: ControllerThread, name: str, **labels: str) -> float:
    """One sample of the controller's /metrics (0 when absent)."""
    selector = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = "^" + re.escape(f"{name}{{{selector}}}" if labels else name) + r" (\S+)$"
    found = re.search(pattern, controller.http.get("/metrics").text, re.M)
    return float(found.group(1)) if found else 0.0


def test_simulated_fleet_telemetry_is_stored_and_nodes_are_online(
    start_controller: ControllerFactory, mosquitto: Mosquitto, influx: InfluxClient, tmp_path: Path
) -> None:
    controller = start_controller()
    sim = SimSettings(nodes=3, mqtt_url=mosquitto.url, data_dir=tmp_path / "sim", telemetry_interval_s=0.5, ramp_s=0.3)
    with background_fleet(sim):
        assert wait_until(
            lambda: [n["state"] for n in controller.http.get("/v1/nodes").json()] == ["online"] * 3, 15
        ), controller.http.get("/v1/nodes").text
        assert wait_until(
            lambda: (
                len(influx.query('SELECT count("seq") FROM telemetry GROUP BY node')) == 3
                and min(r["count"] for r in influx.query('SELECT count("seq") FROM telemetry GROUP BY node')) >= 3
            ),
            15,
        )
    rows = influx.query('SELECT last("soc_pct"), last("temp_c") FROM telemetry GROUP BY node')
    assert sorted(r["node"] for r in rows) == ["sim-0000", "sim-0001", "sim-0002"]
    assert all(0 <= r["last"] <= 100 for r in rows)
    view = controller.http.get("/v1/nodes/sim-0001").json()
    assert len(view["compartments"]) == len(PROFILE.compartments)
    assert view["telemetry"]["node_id"] == "sim-0001"
    assert metric(controller, "lockerfleet_messages_ingested_total", kind="telemetry") >= 9


def test_http_open_drives_the_relay_and_reports_the_physical_outcome(
    start_agent: AgentFactory, start_controller: ControllerFactory, influx: InfluxClient
) -> None:
    hardware = build_hardware(PROFILE, working_doors=("A1",))
    start_agent("node-1", hardware)
    controller = start_controller()
    assert wait_until(lambda: node_state(controller, "node-1") == "online", 10)

    opened = controller.http.post("/v1/nodes/node-1/compartments/A1/open")
    assert opened.status_code == 200, opened.text
    assert opened.json()["status"] == "done"
    assert opened.json()["outcome"]["result"] == "opened"
    [pulse] = pulses(hardware.pin_factory.pin(PROFILE.compartments[0].relay_pin))
    assert pulse == pytest.approx(PULSE_MS / 1000, abs=0.05)

    jammed = controller.http.post("/v1/nodes/node-1/compartments/B1/open", json={"timeout_s": 5})
    assert jammed.status_code == 200, jammed.text
    assert jammed.json()["outcome"]["result"] == "jammed"
    b1 = next(c for c in PROFILE.compartments if c.id == "B1")
    assert len(pulses(hardware.pin_factory.pin(b1.relay_pin))) == 1

    assert wait_until(lambda: len(influx.query("SELECT rtt_ms FROM courier_open")) == 2, 5)
    outcomes = sorted(r["outcome"] for r in influx.query("SELECT rtt_ms, outcome FROM courier_open"))
    assert {r["requested_by"] for r in influx.query("SELECT rtt_ms, requested_by FROM courier_open")} == {
        "operator:tests"
    }
    assert outcomes == ["jammed", "opened"]
    assert metric(controller, "lockerfleet_open_round_trip_seconds_count", outcome="opened") == 1


def test_bad_requests_get_clear_4xx(start_agent: AgentFactory, start_controller: ControllerFactory) -> None:
    start_agent("node-1", build_hardware(PROFILE))
    controller = start_controller()
    assert wait_until(lambda: node_state(controller, "node-1") == "online", 10)
    unknown = controller.http.post("/v1/nodes/node-9/compartments/A1/open")
    assert unknown.status_code == 404 and "unknown node" in unknown.json()["detail"]
    no_such = controller.http.post("/v1/nodes/node-1/compartments/Z9/open")
    assert no_such.status_code == 404 and "no compartment 'Z9'" in no_such.json()["detail"]
    bad_body = controller.http.post("/v1/nodes/node-1/compartments/A1/open", json={"timeout_s": -1})
    assert bad_body.status_code == 422 and "timeout_s" in bad_body.json()["detail"]
    bad_id = controller.http.get("/v1/nodes/a+b")
    assert bad_id.status_code == 422 and "node_id" in bad_id.json()["detail"]
    paths = controller.http.get("/openapi.json").json()["paths"]
    opens = paths["/v1/nodes/{node_id}/compartments/{compartment}/open"]["post"]["responses"]
    assert {"200", "404", "409", "422", "429", "502", "504"} <= set(opens)
    assert {"/v1/nodes", "/v1/nodes/{node_id}", "/healthz", "/metrics"} <= set(paths)


def test_fleet_wide_open_limit_answers_429_without_sending_anything(
    start_agent: AgentFactory, start_controller: ControllerFactory
) -> None:
    hardware = build_hardware(PROFILE, working_doors=("A1", "A2"))
    start_agent("node-1", hardware)
    controller = start_controller(open_rate_per_min=1, open_burst=1)
    assert wait_until(lambda: node_state(controller, "node-1") == "online", 10)
    assert controller.http.post("/v1/nodes/node-1/compartments/A1/open").status_code == 200
    limited = controller.http.post("/v1/nodes/node-1/compartments/A2/open")
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert "open limit" in limited.json()["detail"]
    a2 = next(c for c in PROFILE.compartments if c.id == "A2")
    assert pulses(hardware.pin_factory.pin(a2.relay_pin)) == []
    assert metric(controller, "lockerfleet_opens_rate_limited_total", scope="fleet") == 1


def test_node_that_does_not_answer_gets_504_and_the_command_never_runs_later(
    start_agent: AgentFactory, start_controller: ControllerFactory, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    hardware = build_hardware(PROFILE, working_doors=("A1",))
    agent = start_agent("node-1", hardware, data_dir=tmp_path / "n1")
    controller = start_controller()
    assert wait_until(lambda: node_state(controller, "node-1") == "online", 10)
    results = Capture(mosquitto.url, topic("node-1", Channel.RESULT))
    # The node hangs: still connected (a clean stop would say offline), answering nothing past the expiry.
    agent.loop.call_soon_threadsafe(time.sleep, 3.0)

    timed_out = controller.http.post("/v1/nodes/node-1/compartments/A1/open", json={"timeout_s": 1})
    assert timed_out.status_code == 504
    command_id = timed_out.json()["command_id"]
    assert command_id and "did not answer" in timed_out.json()["detail"]

    answered = results.wait_until(lambda ds: bool(final(ds, command_id)), 10)  # once it runs again
    assert [r.status for r in final(answered, command_id)] == [CommandStatus.EXPIRED]
    assert pulses(hardware.pin_factory.pin(PROFILE.compartments[0].relay_pin)) == []
    assert metric(controller, "lockerfleet_open_round_trip_seconds_count", outcome="timeout") == 1


def test_kill_9_of_an_agent_turns_its_node_offline_and_opens_are_refused(
    start_controller: ControllerFactory, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    controller = start_controller()
    agent = subprocess.Popen(
        [
            *(sys.executable, "-c", "from controller.cli import main; raise SystemExit(main())", "agent"),
            *("--node-id=node-k", f"--mqtt-url={mosquitto.url}", f"--data-dir={tmp_path / 'k'}"),
            f"--board-profile={shipped_profile('sim-locker-8')}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_until(lambda: node_state(controller, "node-k") == "online", 20)
    finally:
        agent.kill()
        agent.wait()
    assert wait_until(lambda: node_state(controller, "node-k") == "offline", 10)
    refused = controller.http.post("/v1/nodes/node-k/compartments/A1/open")
    assert refused.status_code == 409 and "offline" in refused.json()["detail"]
    assert metric(controller, "lockerfleet_nodes", state="offline") == 1


def test_redelivered_telemetry_is_stored_once(
    start_controller: ControllerFactory, mosquitto: Mosquitto, influx: InfluxClient
) -> None:
    controller = start_controller()
    payload = encode(samples.telemetry(node_id="node-r", seq=5))
    publisher = connect(mosquitto.url)
    for _ in range(3):
        publisher.publish(topic("node-r", Channel.TELEMETRY), payload, qos=1).wait_for_publish(5)
    assert wait_until(lambda: influx.count("telemetry") == 1, 5)
    # Once the first copies are stored and acknowledged, a redelivery is recognised without writing.
    assert wait_until(lambda: metric(controller, "lockerfleet_ingest_buffer_messages") == 0, 5)
    publisher.publish(topic("node-r", Channel.TELEMETRY), payload, qos=1).wait_for_publish(5)
    assert wait_until(lambda: metric(controller, "lockerfleet_messages_duplicate_total", kind="telemetry") >= 1, 5)
    time.sleep(0.3)
    assert influx.count("telemetry") == 1
    publisher.disconnect()


def mosquitto_pub(mosquitto: Mosquitto, topic_name: str, payload: bytes) -> None:
    subprocess.run(
        ["mosquitto_pub", "-p", str(mosquitto.port), "-q", "1", "-t", topic_name, "-s"], input=payload, check=True
    )


def test_bad_input_is_counted_kept_and_never_stops_good_messages(
    start_controller: ControllerFactory, mosquitto: Mosquitto, influx: InfluxClient
) -> None:
    controller = start_controller()
    good = samples.telemetry(node_id="node-1", seq=1)
    bad = {
        "malformed": (topic("node-1", Channel.TELEMETRY), b"\xff\x00garbage{"),
        "invalid": (topic("node-1", Channel.TELEMETRY), b'{"hello": "world"}'),
        "oversized": (topic("node-1", Channel.TELEMETRY), b"x" * 1_000_000),
        "wrong_node": (topic("node-1", Channel.TELEMETRY), encode(samples.telemetry(node_id="node-2"))),
        "unknown_version": (
            topic("node-1", Channel.TELEMETRY),
            encode(good).replace(b'"schema_version":1', b'"schema_version":99'),
        ),
        "unknown_topic": ("lockers/v1/not a node/telemetry", encode(good)),
    }
    for topic_name, payload in bad.values():
        mosquitto_pub(mosquitto, topic_name, payload)
    mosquitto_pub(mosquitto, topic("node-1", Channel.TELEMETRY), encode(good))

    assert wait_until(lambda: influx.count("telemetry") == 1, 5)
    assert wait_until(lambda: influx.count("dead_letter", "size_bytes") == len(bad), 5)
    for reason in bad:
        assert metric(controller, "lockerfleet_messages_rejected_total", reason=reason) == 1, reason
    rows = influx.query('SELECT "reason", topic, size_bytes, payload, truncated FROM dead_letter')
    by_reason = {r["reason"]: r for r in rows}
    assert by_reason["oversized"]["size_bytes"] == 1_000_000 and by_reason["oversized"]["truncated"] is True
    assert len(by_reason["oversized"]["payload"]) == 4096
    assert by_reason["invalid"]["payload"] == '{"hello": "world"}'
    assert by_reason["unknown_topic"]["topic"] == "lockers/v1/not a node/telemetry"
    assert [r["seq"] for r in influx.query("SELECT seq FROM telemetry")] == [1]
    assert controller.http.get("/healthz").status_code == 200


def test_metrics_pass_promtool(start_agent: AgentFactory, start_controller: ControllerFactory, tmp_path: Path) -> None:
    start_agent("node-1", build_hardware(PROFILE, working_doors=("A1",)))
    controller = start_controller()
    assert wait_until(lambda: node_state(controller, "node-1") == "online", 10)
    assert controller.http.post("/v1/nodes/node-1/compartments/A1/open").status_code == 200
    exposition = controller.http.get("/metrics")
    assert exposition.status_code == 200
    for family in (
        "lockerfleet_messages_ingested_total",
        "lockerfleet_messages_rejected_total",
        "lockerfleet_influx_batch_lines",
        "lockerfleet_influx_write_seconds",
        "lockerfleet_influx_write_retries_total",
        "lockerfleet_ingest_buffer_messages",
        "lockerfleet_open_round_trip_seconds",
        "lockerfleet_nodes",
        "lockerfleet_nodes_in_maintenance",
    ):
        assert f"# TYPE {family} " in exposition.text, family
    check = subprocess.run(["promtool", "check", "metrics"], input=exposition.content, capture_output=True, check=False)
    assert check.returncode == 0 and not check.stdout.strip() and not check.stderr.strip(), check


def test_restart_keeps_the_registry(
    start_agent: AgentFactory, start_controller: ControllerFactory, mosquitto: Mosquitto
) -> None:
    agent = start_agent("node-1", build_hardware(PROFILE))
    first = start_controller()
    assert wait_until(lambda: node_state(first, "node-1") == "online", 10)
    first.stop()
    agent.stop()  # a clean disconnect: no will
    publisher = connect(mosquitto.url)
    publisher.publish(topic("node-1", Channel.STATUS), b"", qos=1, retain=True).wait_for_publish(5)  # no retained birth
    publisher.disconnect()
    second = start_controller()
    view = second.http.get("/v1/nodes/node-1")
    assert view.status_code == 200, "the node was forgotten across the restart"
    assert view.json()["boot_id"] == 1 and view.json()["compartments"][0]["id"] == "A1"


def test_a_broker_outage_is_reported_as_the_controllers_not_as_the_node_being_offline(
    start_controller: ControllerFactory, mosquitto: Mosquitto, start_agent: AgentFactory, tmp_path: Path
) -> None:
    sites = tmp_path / "sites.json"
    sites.write_text(json.dumps([{"site_id": "centre", "lat": 52.52, "lon": 13.405}]))
    controller = start_controller(sites_file=sites)
    start_agent("node-1")
    assert wait_until(lambda: controller.http.get("/v1/nodes/node-1").status_code == 200, 10)
    partner = controller.controller.reservation_store.create_api_key("parcelco", {"centre"}, datetime.now(UTC))
    mosquitto.stop()
    assert wait_until(lambda: controller.http.get("/readyz").status_code == 503, 10)
    opened = controller.http.post("/v1/nodes/node-1/compartments/A1/open")
    assert opened.status_code == 503 and "lost the MQTT broker" in opened.json()["detail"]
    arrival = datetime.now(UTC).isoformat()
    reserved = controller.http.post(
        "/v1/reservations",
        json={"site": "centre", "size": "S", "parcel_ref": "P1", "expected_arrival": arrival},
        headers={"Authorization": f"Bearer {partner}", "Idempotency-Key": "outage-1"},
    )
    assert reserved.status_code == 503 and "lost the MQTT broker" in reserved.json()["detail"]
