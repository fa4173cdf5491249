"""Alerts through a real controller, mosquitto and InfluxDB, driven by crafted status messages of simulated lockers.

Every announcement is counted where it arrives: the operator webhook (signed), the MQTT alert channel, the ``alert``
measurement. "Nothing else arrived" is checked behind a later announcement (a barrier): announcements are published
and delivered in the order they were stored.
"""

import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from controller.cli import main
from controller.devstack.services import Mosquitto
from controller.notify.webhooks import verify
from schemas import Channel, StatusBirth, StatusDeath, encode, topic
from schemas.alert import AlertNotice
from schemas.topics import alerts_filter
from tests import samples
from tests.harness.controller_runner import ControllerFactory, ControllerThread
from tests.harness.influx import InfluxClient
from tests.harness.mqtt import Capture, connect, disconnect, wait_until
from tests.harness.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.integration

FAST_RULES = """
[defaults.operations]
offline_after_s = 3600
offline_for_s = 0
offline_keep_firing_for_s = 0
stale_after_s = 3600
"""

GROUPING_RULES = """
[defaults.operations]
offline_after_s = 3600
offline_for_s = 600  # node alerts stay pending far longer than the test: only the site alert may fire
offline_keep_firing_for_s = 0
stale_after_s = 3600
site_for_s = 0
"""


class Lockers:
    """Publishes crafted births and last wills, as lockers (or their broker) would."""

    def __init__(self, url: str) -> None:
        self.client = connect(url)

    def birth(self, node: str, boot: int, site: str = "s1") -> None:
        message = samples.birth(node, boot_id=boot).model_copy(update={"site": site, "ts": datetime.now(UTC)})
        self._status(message)

    def death(self, node: str, boot: int) -> None:
        self._status(StatusDeath(node_id=node, boot_id=boot, seq=1, ts=datetime.now(UTC)))

    def _status(self, message: StatusBirth | StatusDeath) -> None:
        self.client.publish(topic(message.node_id, Channel.STATUS), encode(message), qos=1, retain=True)

    def close(self) -> None:
        disconnect(self.client)


def register_webhook(capsys: pytest.CaptureFixture[str], store_path: Path, url: str) -> str:
    """``lockerfleet operator-webhook``; returns the signing secret it printed."""
    capsys.readouterr()
    argv = ["operator-webhook", "--url", url, "--name", "ops", "--store-path", str(store_path)]
    argv += ["--create-store", "true"]  # before the controller's first start
    assert main([*argv, "--webhook-allow-private", "true"]) == 0
    return capsys.readouterr().out.strip().splitlines()[-1]


def hooks(receiver: WebhookReceiver, secret: str) -> list[dict[str, Any]]:
    """Webhook bodies received, each checked against its signature."""
    out = []
    for got in list(receiver.received):
        assert verify(secret, got.headers["Lockerfleet-Signature"], got.body, int(time.time()))
        out.append(json.loads(got.body))
    return out


def keys(items: list[dict[str, Any]], alert_prefix: str = "") -> list[str]:
    return [i["delivery_key"] for i in items if i["alert_id"].startswith(alert_prefix)]


def mqtt_notices(capture: Capture) -> list[dict[str, Any]]:
    out = []
    for delivered in capture.snapshot():
        notice = AlertNotice.model_validate_json(delivered.payload)  # the contract's model
        assert not delivered.retain and delivered.topic == f"lockerfleet/v1/alerts/{notice.site_id or '_fleet'}"
        out.append(notice.model_dump(mode="json"))
    return out


def metric(controller: ControllerThread, line_start: str) -> float:
    for line in controller.http.get("/metrics").text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    path = tmp_path / "alerts.toml"
    path.write_text(FAST_RULES)
    return path


def test_an_offline_node_fires_once_and_resolves_everywhere(
    start_controller: ControllerFactory,
    mosquitto: Mosquitto,
    influx: InfluxClient,
    rules_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    receiver = WebhookReceiver()
    secret = register_webhook(capsys, tmp_path / "controller.sqlite3", receiver.url)
    capture = Capture(mosquitto.url, alerts_filter())
    controller = start_controller(alert_rules_file=rules_file, alert_eval_s=0.2)
    lockers = Lockers(mosquitto.url)
    lockers.birth("node-1", boot=3)
    assert wait_until(lambda: controller.controller.fleet.get("node-1") is not None, 10)
    lockers.death("node-1", boot=3)
    raised = "node_offline:node-1#1:raised"
    assert wait_until(lambda: keys(hooks(receiver, secret)) == [raised], 15), hooks(receiver, secret)
    [alert] = controller.http.get("/v1/alerts", params={"state": "firing", "node": "node-1"}).json()
    assert (alert["id"], alert["rule"], alert["severity"], alert["site_id"]) == (
        "node_offline:node-1",
        "node_offline",
        "warning",
        "s1",
    )

    lockers.birth("node-1", boot=4)
    expected = [raised, "node_offline:node-1#1:resolved"]
    assert wait_until(lambda: keys(hooks(receiver, secret)) == expected, 15), hooks(receiver, secret)
    assert wait_until(lambda: keys(mqtt_notices(capture)) == expected, 10), mqtt_notices(capture)
    assert controller.http.get("/v1/alerts", params={"state": "open"}).json() == []
    [resolved] = controller.http.get("/v1/alerts", params={"state": "resolved", "site": "s1"}).json()
    assert resolved["resolved_at"] is not None
    assert wait_until(lambda: influx.count("alert", "episode") == 2, 10)
    rows = influx.query('SELECT "alert_id", "time_to_resolve_s" FROM "alert" GROUP BY "transition", "node", "rule"')
    assert sorted((r["transition"], r["node"], r["rule"], r["alert_id"]) for r in rows) == [
        ("raised", "node-1", "node_offline", "node_offline:node-1"),
        ("resolved", "node-1", "node_offline", "node_offline:node-1"),
    ]
    assert [r["time_to_resolve_s"] is not None for r in sorted(rows, key=lambda r: r["transition"])] == [False, True]
    labels = 'rule="node_offline",severity="warning"'
    assert metric(controller, f'lockerfleet_alert_notifications_total{{{labels},transition="raised"}}') == 1
    assert metric(controller, f'lockerfleet_alerts{{{labels},state="resolved"}}') == 1
    lockers.close()
    capture.close()
    receiver.close()


def test_a_battery_under_its_floor_fires_from_telemetry_and_a_swapped_pack_resolves_it(
    start_controller: ControllerFactory, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    rules = tmp_path / "battery.toml"
    rules.write_text(FAST_RULES + "[defaults.battery]\nswap_for_s = 0\nswap_keep_firing_for_s = 0\n")
    capture = Capture(mosquitto.url, alerts_filter())
    controller = start_controller(alert_rules_file=rules, alert_eval_s=0.2)
    lockers = Lockers(mosquitto.url)
    lockers.birth("node-1", boot=3)
    assert wait_until(lambda: controller.controller.fleet.get("node-1") is not None, 10)

    def telemetry(seq: int, soc: float) -> None:
        sample = samples.telemetry("node-1", seq=seq, soc=soc, ts=datetime.now(UTC))
        lockers.client.publish(topic("node-1", Channel.TELEMETRY), encode(sample), qos=1)

    telemetry(1, 15.0)
    raised = "battery_swap:node-1#1:raised"
    assert wait_until(lambda: keys(mqtt_notices(capture)) == [raised], 15), mqtt_notices(capture)
    [notice] = mqtt_notices(capture)
    assert (notice["severity"], notice["site_id"], notice["details"]["soc_pct"]) == ("critical", "s1", 15.0)
    telemetry(2, 95.0)  # a fresh pack
    assert wait_until(lambda: keys(mqtt_notices(capture)) == [raised, "battery_swap:node-1#1:resolved"], 15)
    lockers.close()
    capture.close()


def test_a_restart_mid_episode_sends_nothing_twice(
    start_controller: ControllerFactory,
    mosquitto: Mosquitto,
    rules_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    receiver = WebhookReceiver()
    secret = register_webhook(capsys, tmp_path / "controller.sqlite3", receiver.url)
    capture = Capture(mosquitto.url, alerts_filter())
    first = start_controller(alert_rules_file=rules_file, alert_eval_s=0.2)
    lockers = Lockers(mosquitto.url)
    lockers.birth("node-1", boot=3)
    assert wait_until(lambda: first.controller.fleet.get("node-1") is not None, 10)
    lockers.death("node-1", boot=3)
    assert wait_until(lambda: len(hooks(receiver, secret)) == 1, 15)
    acked = first.http.post("/v1/alerts/node_offline:node-1/ack")
    assert acked.status_code == 200 and acked.json()["acked_by"] == "tests"
    assert first.http.post("/v1/alerts/node_offline:node-1/ack").status_code == 200  # again: nothing new
    assert wait_until(lambda: len(mqtt_notices(capture)) == 2, 10)
    first.stop()

    second = start_controller(alert_rules_file=rules_file, alert_eval_s=0.2)
    [alert] = second.http.get("/v1/alerts", params={"state": "firing"}).json()
    assert (alert["episode"], alert["acked_by"]) == (1, "tests")
    lockers.birth("node-1", boot=4)
    assert wait_until(lambda: len(hooks(receiver, secret)) == 3, 15)
    lockers.birth("node-2", boot=3)  # the barrier: an alert announced after everything above
    assert wait_until(lambda: second.controller.fleet.get("node-2") is not None, 10)
    lockers.death("node-2", boot=3)
    barrier = "node_offline:node-2#1:raised"
    assert wait_until(lambda: barrier in keys(hooks(receiver, secret)), 15)
    assert wait_until(lambda: barrier in keys(mqtt_notices(capture)), 10)

    expected = [f"node_offline:node-1#1:{t}" for t in ("raised", "acknowledged", "resolved")]
    assert keys(hooks(receiver, secret), "node_offline:node-1") == expected
    assert keys(mqtt_notices(capture), "node_offline:node-1") == expected
    lockers.close()
    capture.close()
    receiver.close()


def test_a_thousand_nodes_of_one_site_going_dark_are_one_grouped_alert(
    start_controller: ControllerFactory, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    rules = tmp_path / "grouping.toml"
    rules.write_text(GROUPING_RULES)
    capture = Capture(mosquitto.url, alerts_filter())
    controller = start_controller(alert_rules_file=rules, alert_eval_s=0.2)
    lockers = Lockers(mosquitto.url)
    nodes = [f"big-{i:04d}" for i in range(1000)]
    for node in nodes:
        lockers.birth(node, boot=3, site="big")
    assert wait_until(lambda: len(controller.controller.fleet.records()) == 1000, 60)
    for node in nodes:
        lockers.death(node, boot=3)
    raised = "site_uplink_lost:@big#1:raised"
    assert wait_until(lambda: keys(mqtt_notices(capture)) == [raised], 60), mqtt_notices(capture)[:3]

    def site_alert() -> dict[str, Any]:
        [alert] = controller.http.get("/v1/alerts", params={"state": "firing"}).json()
        return dict(alert)

    assert site_alert()["id"] == "site_uplink_lost:@big"
    # raised once the site's share went dark; its details follow the deaths still arriving
    assert wait_until(lambda: site_alert()["details"]["offline"] == 1000, 30), site_alert()["details"]["offline"]
    assert len(site_alert()["details"]["nodes"]) == 1000

    for node in nodes:  # the uplink is back: the site alert resolves, the held node alerts never fire
        lockers.birth(node, boot=4, site="big")
    resolved = "site_uplink_lost:@big#1:resolved"
    assert wait_until(lambda: keys(mqtt_notices(capture)) == [raised, resolved], 60), mqtt_notices(capture)[:3]
    notices = mqtt_notices(capture)
    raised_with = notices[0]["details"]["offline"]  # as many as were dark when it was raised
    assert 500 <= raised_with <= 1000 and len(notices[0]["details"]["nodes"]) == min(raised_with, 100)  # cut to 100
    assert wait_until(lambda: controller.http.get("/v1/alerts", params={"state": "open"}).json() == [], 30)
    lockers.close()
    capture.close()


def test_silences_mute_and_their_end_announces_what_they_held(
    start_controller: ControllerFactory, mosquitto: Mosquitto, rules_file: Path
) -> None:
    capture = Capture(mosquitto.url, alerts_filter())
    controller = start_controller(alert_rules_file=rules_file, alert_eval_s=0.2)
    created = controller.http.post(
        "/v1/silences", json={"node_id": "node-*", "comment": "site visit", "duration_s": 3600}
    )
    assert created.status_code == 201, created.text
    silence = created.json()
    assert silence["active"] and silence["created_by"] == "tests"
    assert controller.http.post("/v1/silences", json={"comment": "x", "duration_s": 5}).status_code == 422
    lockers = Lockers(mosquitto.url)
    lockers.birth("node-1", boot=3)
    assert wait_until(lambda: controller.controller.fleet.get("node-1") is not None, 10)
    lockers.death("node-1", boot=3)
    assert wait_until(
        lambda: [a["silenced"] for a in controller.http.get("/v1/alerts", params={"state": "firing"}).json()] == [True],
        15,
    )
    assert capture.snapshot() == []
    assert [s["id"] for s in controller.http.get("/v1/silences").json()] == [silence["id"]]
    ended = controller.http.delete(f"/v1/silences/{silence['id']}")
    assert ended.status_code == 200 and not ended.json()["active"]
    assert wait_until(lambda: keys(mqtt_notices(capture)) == ["node_offline:node-1#1:raised"], 15)
    assert controller.http.delete(f"/v1/silences/{'0' * 16}").status_code == 404
    assert controller.http.post("/v1/alerts/node_offline:nope/ack").status_code == 404
    partner = controller.http.get("/v1/alerts", headers={"Authorization": "Bearer nope"})
    assert partner.status_code == 401
    lockers.close()
    capture.close()


def test_a_bad_rules_file_stops_the_controller_naming_rule_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "alerts.toml"
    bad.write_text("[sites.centre.battery]\nfloor_pct = 120\n")
    lockerfleet = Path(sys.executable).with_name("lockerfleet")
    done = subprocess.run(
        [str(lockerfleet), "controller", "--alert-rules-file", str(bad), "--store-path", str(tmp_path / "s.db")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "--alert-rules-file / LOCKERFLEET_ALERT_RULES_FILE" in done.stderr
    assert "sites.centre.battery.floor_pct: must be ≤ 100" in done.stderr
    assert not (tmp_path / "s.db").exists()  # stopped before touching anything
