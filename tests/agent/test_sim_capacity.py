"""`sim --nodes` is honest about the descriptor limit: the soft limit is raised to the hard one, and a fleet that
does not fit is refused before any node starts, naming the limit and the ways around it."""

import logging
import random
import resource
from pathlib import Path

import pytest

from node_agent.cli import main
from node_agent.sim.fleet import FDS_PER_NODE, SimCapacityError, check_capacity, node_capacity
from node_agent.sim.ota import failing_nodes


@pytest.fixture
def limits(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """A process whose soft descriptor limit is 1,024 and hard limit 20,000; every setrlimit call is kept."""
    current = [(1024, 20_000)]
    monkeypatch.setattr(resource, "getrlimit", lambda _which: current[-1])
    monkeypatch.setattr(resource, "setrlimit", lambda _which, value: current.append(value))
    return current


def test_twenty_thousand_descriptors_fit_1641_nodes() -> None:
    assert FDS_PER_NODE == 12
    assert node_capacity(20_000) == 1641
    assert node_capacity(100) == 0


def test_a_fleet_beyond_the_limit_is_refused_with_the_limit_and_the_way_out(limits: list[tuple[int, int]]) -> None:
    check_capacity(node_capacity(1024))
    with pytest.raises(SimCapacityError) as refused:
        check_capacity(node_capacity(1024) + 1)
    message = str(refused.value)
    assert "may open 1,024" in message and "hard limit 20,000" in message
    assert "--node-offset" in message and "LimitNOFILE" in message


def test_sim_raises_its_soft_limit_then_refuses_what_still_does_not_fit(
    limits: list[tuple[int, int]], caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    with caplog.at_level(logging.ERROR):
        code = main(["sim", "--nodes", "5000", "--data-dir", str(tmp_path / "sim"), "--mqtt-url", "mqtt://127.0.0.1:9"])
    assert code == 2
    assert limits[-1] == (20_000, 20_000), "the soft limit was raised to the hard one first"
    assert "--nodes 5000 needs about 60,300 file descriptors" in caplog.text
    assert "enough for 1,641 nodes" in caplog.text
    assert not (tmp_path / "sim").exists(), "refused before any node was built"


def test_ota_fail_takes_named_nodes_and_a_seeded_share_and_refuses_unknown_names() -> None:
    nodes = [f"sim-{i:04d}" for i in range(100)]
    assert failing_nodes(nodes, ["sim-0007"], 0.0, random.Random(1)) == {"sim-0007"}
    assert failing_nodes(nodes, [], 1.0, random.Random(1)) == set(nodes)
    share = failing_nodes(nodes, [], 0.2, random.Random(1))
    assert share == failing_nodes(nodes, [], 0.2, random.Random(1)) and 5 < len(share) < 40
    with pytest.raises(ValueError, match="sim-9999"):
        failing_nodes(nodes, ["sim-9999"], 0.0, random.Random(1))
