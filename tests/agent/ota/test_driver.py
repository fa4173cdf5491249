"""The OTA driver on the sim shim: success only after restart and commit, refusals that leave the running slot
untouched, rollback after N failed starts, deferral by the gate, and a crash at every step."""

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from node_agent.ota.driver import ota_event
from node_agent.ota.state import Cause, Phase
from node_agent.ota.store import StateFile
from schemas.ota import OtaState
from tests.agent.ota.harness import BIG, URL, Crash, Faults, Node
from tests.agent.ota.releases import OTHER_KEY, T0, artifact


def states(node: Node) -> list[OtaState]:
    return [r.state for r in node.reports]


def test_an_update_succeeds_only_after_the_restart_health_check_and_commit(tmp_path: Path) -> None:
    node = Node(tmp_path)
    node.run_to_the_end(node.command(node.publish("1.1.0", artifact("1.1.0", BIG))))
    assert node.started == ["1.0.0", "1.1.0"]
    assert node.shim.current() == "1.1.0" and node.shim.previous() == "1.0.0" and node.shim.trial() is None
    assert (node.shim.slot("1.1.0") / "files" / "blob.bin").read_bytes() == BIG["blob.bin"]
    seen = states(node)
    assert seen.index(OtaState.DOWNLOADING) < seen.index(OtaState.VERIFYING) < seen.index(OtaState.INSTALLING)
    assert seen.index(OtaState.RESTARTING) < seen.index(OtaState.TESTING) < seen.index(OtaState.SUCCEEDED)
    assert seen[-1] is OtaState.SUCCEEDED and seen.count(OtaState.SUCCEEDED) == 1
    downloading = [r for r in node.reports if r.state is OtaState.DOWNLOADING]
    assert downloading[-1].bytes_done == downloading[-1].bytes_total == len(artifact("1.1.0", BIG))
    record = StateFile(tmp_path / "data" / "ota.json").load()
    assert record.phase is Phase.IDLE and str(record.floor) == "1.0.0"
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["ota.json"], "the download is cleaned up"


def _flip(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 1])


REFUSALS: dict[str, tuple[Callable[[Node], None], str]] = {
    "oversized": (lambda n: n.artifacts.update({URL: artifact("1.1.0", BIG)}), "download_failed"),
    "same size, other bytes": (lambda n: n.artifacts.update({URL: _flip(artifact("1.1.0"))}), "tampered"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_an_artifact_that_is_not_the_signed_one_is_refused_after_download(tmp_path: Path, case: str) -> None:
    node = Node(tmp_path)
    command = node.command(node.publish("1.1.0", artifact("1.1.0")))
    tamper, reason = REFUSALS[case]
    tamper(node)
    node.run_to_the_end(command)
    assert [(r.state, r.reason) for r in node.reports][-1] == (OtaState.FAILED, reason)
    assert node.started == ["1.0.0"] and node.shim.current() == "1.0.0" and node.shim.trial() is None
    assert sorted(p.name for p in node.shim.releases.iterdir()) == ["1.0.0"]


@pytest.mark.parametrize(
    ("release", "reason"),
    [
        ({"key": OTHER_KEY}, "unknown_key"),
        ({"hardware": "locker-pi5-v2"}, "wrong_hardware"),
        ({"expires": T0 - timedelta(seconds=1)}, "expired"),
        ({"version": "0.9.0", "min_version": "0.9.0"}, "downgrade"),
    ],
)
def test_a_release_this_node_must_not_install_is_refused_before_download(
    tmp_path: Path, release: dict[str, Any], reason: str
) -> None:
    node = Node(tmp_path)
    version = str(release.pop("version", "1.1.0"))
    if "expires" in release:
        node.now = T0 + timedelta(days=1)
        release["expires"] = T0 + timedelta(hours=1)
    node.run_to_the_end(node.command(node.publish(version, artifact(version), **release)))
    assert [(r.state, r.reason) for r in node.reports] == [(OtaState.FAILED, reason)]
    assert node.requests == [], "nothing downloaded"
    assert node.started == ["1.0.0"] and node.shim.current() == "1.0.0"


def test_a_bad_signature_is_refused(tmp_path: Path) -> None:
    node = Node(tmp_path)
    good = node.publish("1.1.0", artifact("1.1.0"))
    forged = good.model_copy(update={"manifest": good.manifest.model_copy(update={"size": good.manifest.size + 1})})
    node.run_to_the_end(node.command(forged))
    assert [(r.state, r.reason) for r in node.reports] == [(OtaState.FAILED, "bad_signature")]
    assert node.shim.current() == "1.0.0"


def test_a_release_below_the_committed_floor_is_refused(tmp_path: Path) -> None:
    node = Node(tmp_path)
    node.run_to_the_end(node.command(node.publish("1.2.0", artifact("1.2.0"), min_version="1.2.0")))
    assert node.shim.current() == "1.2.0"
    node.shim.rollback()  # an operator put 1.0.0 back by hand; the floor still forbids anything below 1.2.0
    node.reports.clear()
    node.run_to_the_end(node.command(node.publish("1.1.0", artifact("1.1.0")), command_id="up-2"))
    assert [(r.state, r.reason) for r in node.reports] == [(OtaState.FAILED, "downgrade")]


def test_n_failed_starts_roll_back_and_report_rolled_back(tmp_path: Path) -> None:
    node = Node(tmp_path, healthy=False)
    node.run_to_the_end(node.command(node.publish("1.1.0", artifact("1.1.0"))))
    assert node.started == ["1.0.0", "1.1.0", "1.1.0", "1.1.0", "1.0.0"]
    final = node.reports[-1]
    assert (final.state, final.reason) == (OtaState.ROLLED_BACK, "health_check_failed")
    assert "relay A1" in final.detail
    assert node.shim.current() == "1.0.0" and node.shim.trial() is None
    assert sorted(p.name for p in node.shim.releases.iterdir()) == ["1.0.0"], "the failed slot is removed"


def test_a_busy_locker_defers_until_idle(tmp_path: Path) -> None:
    node = Node(tmp_path)
    door = Cause(code="door_open", detail="door open: A1")
    node.gate_answers = [door, door, None, Cause(code="reservation_due", detail="r1 due"), None]
    node.run_to_the_end(node.command(node.publish("1.1.0", artifact("1.1.0"))))
    deferred = [(r.state, r.reason) for r in node.reports if r.state is OtaState.DEFERRED]
    assert deferred == [(OtaState.DEFERRED, "door_open")] * 2 + [(OtaState.DEFERRED, "reservation_due")]
    assert states(node).index(OtaState.DEFERRED) < states(node).index(OtaState.DOWNLOADING)
    assert node.reports[-1].state is OtaState.SUCCEEDED


def test_a_requested_rollback_returns_to_the_previous_slot(tmp_path: Path) -> None:
    node = Node(tmp_path)
    node.run_to_the_end(node.command(node.publish("1.1.0", artifact("1.1.0"))))
    node.run_to_the_end(node.command(None, command_id="rb-1"))
    assert node.shim.current() == "1.0.0"
    assert (node.reports[-1].state, node.reports[-1].reason) == (OtaState.ROLLED_BACK, "requested")
    node.run_to_the_end(node.command(None, command_id="rb-2"))
    assert (node.reports[-1].state, node.reports[-1].reason) == (OtaState.FAILED, "no_previous_slot")


def test_an_interrupted_download_resumes_with_a_range_request(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("node_agent.ota.download.SYNC_EVERY", 64 * 1024)
    node = Node(tmp_path, faults=Faults(crash_at=3))  # the third chunk of the download
    command = node.command(node.publish("1.1.0", artifact("1.1.0", BIG)))
    with pytest.raises(Crash):
        node.run_to_the_end(command)
    node.faults.crash_at = None
    node.run_to_the_end()
    ranges = [r.headers.get("range") for r in node.requests]
    assert ranges == [None, "bytes=131072-"]
    assert node.final_states() == ["succeeded"]


@pytest.mark.parametrize("healthy", [True, False], ids=["healthy", "unhealthy"])
def test_a_crash_at_every_step_resumes_or_rolls_back_and_never_starts_a_half_installed_slot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, healthy: bool
) -> None:
    faults = Faults()
    save = StateFile.save

    def crashing_save(self: StateFile, record: object) -> None:
        faults.tick()
        save(self, record)  # type: ignore[arg-type]
        faults.tick()

    monkeypatch.setattr(StateFile, "save", crashing_save)
    expected = "succeeded" if healthy else "rolled_back"
    step = 0
    while True:
        step += 1
        node = Node(tmp_path / f"crash-{step}", faults=faults, healthy=healthy)
        faults.steps, faults.crash_at = 0, step
        command = node.command(node.publish("1.1.0", artifact("1.1.0", BIG)))
        try:
            node.run_to_the_end(command)
        except Crash:
            faults.crash_at = None
            node.run_to_the_end(command)  # systemd starts the agent again; the controller may resend the command
        else:
            break
        assert set(node.final_states()) == {expected}, f"crash at step {step}: {node.final_states()}"
        assert node.shim.current() == ("1.1.0" if healthy else "1.0.0") and node.shim.trial() is None
    assert step > 20, "every step was crashed at once"


@pytest.mark.parametrize("healthy", [True, False], ids=["succeeded", "rolled_back"])
def test_every_report_is_a_valid_ota_event_of_the_contract(tmp_path: Path, healthy: bool) -> None:
    node = Node(tmp_path, healthy=healthy)
    node.gate_answers = [Cause(code="door_open", detail="door open: A1")]
    node.run_to_the_end(node.command(node.publish("1.1.0", artifact("1.1.0"))))
    events = [ota_event(r, node_id="n1", boot_id=1, seq=i, ts=T0) for i, r in enumerate(node.reports)]
    assert events[0].state is OtaState.DEFERRED and events[0].reason == "door_open"
    assert events[-1].final and str(events[-1].to_version) == "1.1.0" and str(events[-1].from_version) == "1.0.0"
