"""``lockerfleet rollout`` against a live controller: create, follow to the end with a progress line, pause."""

import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.cli import main
from controller.devstack.services import Mosquitto
from schemas import OtaState
from tests.controller.rollouts.lockers import RELEASE, Lockers, published_release
from tests.harness.controller_runner import ControllerFactory
from tests.harness.mqtt import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def lockers(mosquitto: Mosquitto) -> Iterator[Lockers]:
    made = Lockers(mosquitto.url)
    yield made
    made.close()


def test_follow_draws_progress_until_the_rollout_completes_and_says_how_it_ended(
    start_controller: ControllerFactory,
    lockers: Lockers,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    controller = start_controller(releases_dir=published_release(tmp_path), rollout_tick_s=0.1)
    for node_id, site in (("n1", "a"), ("n2", "b")):
        lockers.born(node_id, site)
    assert wait_until(lambda: len(controller.http.get("/v1/nodes", params={"state": "online"}).json()) == 2, 10)
    monkeypatch.setenv("LOCKERFLEET_OPERATOR_KEY", controller.operator_key)
    monkeypatch.setenv("LOCKERFLEET_URL", controller.url)

    assert main(["rollout", "create", "--release-version", RELEASE, "--policy.canary-count", "1"]) == 0
    created = capsys.readouterr().out
    match = re.search(r"rollout (ro-[0-9a-f]+) of 1\.5\.0 to 2 nodes, waves of 1, 1", created)
    assert match, created
    rid = match[1]
    codes: list[int] = []
    follower = threading.Thread(target=lambda: codes.append(main(["rollout", "follow", "--rollout-id", rid])))
    follower.start()
    printed: list[str] = []

    def bar_shows(text: str) -> bool:
        printed.extend(capsys.readouterr().out.splitlines())
        return any(text in line for line in printed)

    assert wait_until(lambda: bar_shows("0/2 succeeded"), 10)  # the first line, drawn before any report
    (canary,) = lockers.wait_for_updates(1)
    for state in (OtaState.DOWNLOADING, OtaState.RESTARTING, OtaState.TESTING, OtaState.SUCCEEDED):
        lockers.report(canary, state)
    second = lockers.wait_for_updates(2)[1]
    lockers.report(second, OtaState.SUCCEEDED)
    follower.join(30)

    assert codes == [0]
    out = printed + capsys.readouterr().out.splitlines()
    bars = [line for line in out if line.startswith(f"{rid} {RELEASE} [")]
    assert bars[0].endswith("running") and "0/2 succeeded" in bars[0]
    assert "2/2 succeeded" in bars[-1] and bars[-1].endswith("completed")
    assert len(bars) == len(set(bars)), "a line is printed only when it changes (not a terminal)"
    assert out[-1] == f"Rollout {rid} completed: 2 of 2 nodes now run {RELEASE}."


def test_pause_and_a_refused_action_from_the_command_line(
    start_controller: ControllerFactory,
    lockers: Lockers,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    controller = start_controller(releases_dir=published_release(tmp_path), rollout_tick_s=0.1)
    lockers.born("n1", "a")
    assert wait_until(lambda: len(controller.http.get("/v1/nodes", params={"state": "online"}).json()) == 1, 10)
    monkeypatch.setenv("LOCKERFLEET_OPERATOR_KEY", controller.operator_key)
    monkeypatch.setenv("LOCKERFLEET_URL", controller.url)
    rid = controller.http.post("/v1/rollouts", json={"release_version": RELEASE}).json()["rollout_id"]
    capsys.readouterr()

    assert main(["rollout", "pause", "--rollout-id", rid]) == 0
    assert f"rollout {rid} is paused" in capsys.readouterr().out
    assert controller.http.get(f"/v1/rollouts/{rid}").json()["phase"] == "paused"
    assert main(["rollout", "resume", "--rollout-id", "ro-unknown"]) == 1
    assert "404" in capsys.readouterr().err
    assert main(["rollout", "abort", "--rollout-id", rid, "--reason", "wrong release"]) == 0
    view = controller.http.get(f"/v1/rollouts/{rid}").json()
    assert view["phase"] == "aborted" and view["abort_reason"] == "wrong release"
    monkeypatch.setenv("LOCKERFLEET_OPERATOR_KEY", "lfop_wrong_key")
    assert main(["rollout", "list"]) == 1
    assert "401" in capsys.readouterr().err
