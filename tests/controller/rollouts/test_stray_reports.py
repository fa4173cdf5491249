"""OTA reports for commands no rollout sent are logged once per node per minute, with how many were held back."""

import logging
import re
from pathlib import Path
from typing import cast

import pytest

from controller.commands.service import Commands
from controller.fleet.registry import Fleet
from controller.rollouts.runner import RolloutRunner
from controller.store.reservations import ReservationStore
from controller.store.rollouts import RolloutStore
from schemas import CommandResult, CommandStatus
from tests import samples


def test_a_node_repeating_stray_reports_is_logged_once_a_minute(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="controller.rollouts.runner")
    reservations = ReservationStore(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    try:
        runner = RolloutRunner(
            RolloutStore(reservations.engine),
            cast(Commands, None),  # a stray report never reaches commands or the fleet
            cast(Fleet, None),
            maintenance=set(),
            releases_dir=tmp_path,
            public_url="http://controller.invalid",
            store_lines=lambda _lines: None,
        )
        for node in ("node-1", "node-1", "node-1", "node-2"):
            stray = samples.open_result(node).model_copy(update={"status": CommandStatus.FAILED})
            assert isinstance(stray, CommandResult)
            runner.on_result(stray)
    finally:
        reservations.close()
    logged = [re.search(r"node=(\S+)", r.getMessage()) for r in caplog.records if "no rollout sent" in r.getMessage()]
    assert [m[1] if m else None for m in logged] == ["node-1", "node-2"]
