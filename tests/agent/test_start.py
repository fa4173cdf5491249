"""Starting ``lockerfleet-agent agent``: a locker runs on the board profile it names, never on a default board."""

import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from node_agent import main as agent_main
from node_agent.agent import Agent
from node_agent.board import default_sim_profile, shipped_profile
from node_agent.cli import main


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[Agent]:
    """Agents that got as far as serving (the MQTT session is replaced by a recorder)."""
    seen: list[Agent] = []

    async def record(build: Callable[[], Agent], started: Callable[[Agent], None]) -> None:
        agent = build()
        started(agent)
        seen.append(agent)

    monkeypatch.setattr(agent_main, "_serve", record)
    monkeypatch.delenv("LOCKERFLEET_BOARD_PROFILE", raising=False)
    return seen


def test_an_agent_without_a_board_profile_refuses_to_start_and_names_the_setting(
    served: list[Agent], caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    with caplog.at_level(logging.ERROR):
        assert main(["agent", "--node-id", "locker-1", "--data-dir", str(tmp_path / "agent")]) == 2
    assert served == []
    assert not (tmp_path / "agent").exists()  # refused before opening any store
    assert "--board-profile" in caplog.text and "LOCKERFLEET_BOARD_PROFILE" in caplog.text


@pytest.mark.parametrize("given_by", ["flag", "environment"])
def test_an_agent_runs_on_the_board_profile_it_is_given(
    served: list[Agent], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, given_by: str
) -> None:
    profile = shipped_profile("sim-locker-8")
    args = ["agent", "--node-id", "locker-1", "--data-dir", str(tmp_path / "agent")]
    if given_by == "flag":
        args.append(f"--board-profile={profile}")
    else:
        monkeypatch.setenv("LOCKERFLEET_BOARD_PROFILE", str(profile))
    assert main(args) == 0
    assert [a.hardware.profile for a in served] == [default_sim_profile()]
