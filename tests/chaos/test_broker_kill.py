"""mosquitto SIGKILLed while holding messages it acknowledged: with delivery receipts none is lost (issue 10, item 2).

Twenty simulated lockers send telemetry every 0.1 s to a real ``lockerfleet controller`` process. The broker runs
compose.yaml's persistence settings (``autosave_interval 60``): it keeps what it queues in memory and saves it every
minute. The test has the broker save once (SIGUSR1, as the last autosave would have: the sessions and subscriptions
are on disk), then freezes the controller (SIGSTOP) so the broker queues the lockers' telemetry for it and PUBACKs
it, then SIGKILLs the broker and starts it again on the same port and data directory: everything queued since the
save is gone. The controller resumes (SIGCONT) and reconnects, and so do the lockers.

With receipts, every locker still holds what the broker acknowledged and no receipt covered, and sends it again on
its new connection: every (node, boot, seq) the lockers generated is in InfluxDB exactly once and every outbox ends
empty. With receipts off (``--stored-receipt-s 0``: lockers forget at the PUBACK, the behaviour before) the same run
loses every message the broker held at the kill.
"""

import getpass
import signal
from pathlib import Path

import pytest
import yaml

from controller.devstack.services import Mosquitto
from node_agent.settings import SimSettings
from node_agent.sim.fleet import SimFleet, background_fleet
from tests.chaos.exactly_once import (
    ControllerProcess,
    Generated,
    Tally,
    controller_env,
    pause_telemetry,
    stored_telemetry,
    tally,
)
from tests.harness.influx import InfluxClient
from tests.harness.mqtt import wait_until

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
NODES = 20
INTERVAL_S = 0.1
FROZEN_S = 3.0
"""How long the controller is frozen before the kill: the broker queues about NODES / INTERVAL_S per second."""
WINDOW = 100
"""The controller's telemetry receive maximum: at most this many of the ~600 queued messages reach its socket."""


def compose_persistence(data: Path) -> list[str]:
    """compose.yaml's mosquitto persistence settings (autosave 60 s, the queue limit), with a test data directory."""
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    lines = str(compose["configs"]["mosquitto_conf"]["content"]).splitlines()
    kept = [line for line in lines if line.split(" ")[0] in ("persistence", "autosave_interval", "max_queued_messages")]
    assert "autosave_interval 60" in kept, kept
    return [*kept, f"persistence_location {data}/"]


def broker(workdir: Path) -> Mosquitto:
    """A broker with compose's persistence, anonymous on a free port (the ACL has its own test)."""
    workdir.mkdir()
    (workdir / "data").mkdir()
    port_probe = Mosquitto(workdir)  # only for its free port
    config = "\n".join(
        [
            f"listener {port_probe.port} 127.0.0.1",
            "allow_anonymous true",
            f"user {getpass.getuser()}",  # as root, mosquitto would switch to a user who cannot write the data
            *compose_persistence(workdir / "data"),
            "",
        ]
    )
    return Mosquitto(workdir, port_probe.port, config=config)


def settled(fleet: SimFleet) -> bool:
    """Every locker handed its outbox to the broker and a receipt covered all of it."""
    return all(len(agent.outbox) == 0 and agent.outbox.unconfirmed == 0 for agent in fleet.agents)


def run(tmp_path: Path, influx: InfluxClient, monkeypatch: pytest.MonkeyPatch, receipt_s: str) -> Tally:
    """The whole scenario; what InfluxDB holds compared with what the lockers generated."""
    generated = Generated(monkeypatch)
    mosquitto = broker(tmp_path / "mosquitto").start()
    controller = ControllerProcess(
        "controller",
        controller_env(
            mosquitto.url,
            influx,
            tmp_path / "store.sqlite3",
            "chaos-controller",
            batch_max_age_s="0.2",
            # A small window keeps what the broker holds for the frozen controller in the broker, not in the
            # controller's socket buffer (from which the resumed controller would still store it).
            receive_maximum=str(WINDOW),
            stored_receipt_s=receipt_s,
        ),
        tmp_path / "controller.log",
        f"sqlite:///{tmp_path / 'store-reservations.sqlite3'}",
    ).start()
    assert controller.proc is not None
    sim = SimSettings(
        nodes=NODES, mqtt_url=mosquitto.url, data_dir=tmp_path / "sim", telemetry_interval_s=INTERVAL_S, ramp_s=0.5
    )
    try:
        with background_fleet(sim) as fleet:
            assert wait_until(lambda: influx.count("telemetry") >= 200, 30, 0.1), controller.log_tail()
            if receipt_s != "0":  # every locker has seen a receipt: it keeps what the broker acknowledged
                assert wait_until(lambda: all(a.outbox.receipts for a in fleet.agents), 10, 0.1)
            assert mosquitto._proc is not None
            mosquitto._proc.send_signal(signal.SIGUSR1)  # the last autosave: sessions and subscriptions on disk
            assert wait_until((tmp_path / "mosquitto" / "data" / "mosquitto.db").exists, 5, 0.05)
            controller.proc.send_signal(signal.SIGSTOP)
            frozen_at = len(generated)
            assert wait_until(lambda: len(generated) >= frozen_at + FROZEN_S * NODES / INTERVAL_S, 30, 0.05)
            mosquitto.kill()  # SIGKILL: what it queued since the save is lost
            mosquitto.start()
            controller.proc.send_signal(signal.SIGCONT)
            resumed_at = len(generated)
            assert wait_until(lambda: len(generated) >= resumed_at + 200, 30, 0.1)

            assert fleet.loop is not None
            pause_telemetry(fleet)
            expected_at_least = len(generated)
            if receipt_s != "0":
                assert wait_until(lambda: settled(fleet), 30, 0.1), {
                    a.node_id: (len(a.outbox), a.outbox.unconfirmed) for a in fleet.agents
                }
            else:
                assert wait_until(lambda: all(len(a.outbox) == 0 for a in fleet.agents), 30, 0.1)
            expected = generated.snapshot()
            assert len(expected) >= expected_at_least
            # with receipts every message is known to be stored; without, the lost ones never come: wait less
            wait_until(lambda: len(stored_telemetry(influx)) >= len(expected), 20 if receipt_s != "0" else 3, 0.5)
            result = tally(expected, stored_telemetry(influx))
            print(f"broker kill -9 (receipts every {receipt_s} s): {result} frozen_for={resumed_at - frozen_at}")
            return result
    finally:
        controller.stop()
        mosquitto.kill()


def test_broker_killed_while_holding_acknowledged_messages_loses_none_with_receipts(
    tmp_path: Path, influx: InfluxClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run(tmp_path, influx, monkeypatch, receipt_s="0.5")
    assert result.exact, str(result)


def test_without_receipts_the_same_kill_loses_what_the_broker_held(
    tmp_path: Path, influx: InfluxClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scenario is strong enough to lose data: lockers that forget at the PUBACK (receipts off) lose messages."""
    result = run(tmp_path, influx, monkeypatch, receipt_s="0")
    assert result.missing and not result.twice and not result.unknown, str(result)
