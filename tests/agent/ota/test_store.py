"""The persisted OTA state: round trip, idle when absent, a clear error when unreadable, no temp file left."""

from datetime import UTC, datetime
from pathlib import Path

import pytest

from node_agent.ota.state import OtaRecord, Phase, UpdateJob
from node_agent.ota.store import OtaStateError, StateFile
from tests.agent.ota.releases import artifact, signed

JOB = UpdateJob(
    command_id="up-1", rollout_id="ro-1", release=signed("1.1.0", artifact("1.1.0")), artifact_urls=("http://x/a",)
)


def test_a_saved_state_loads_back_and_replaces_the_old_one(tmp_path: Path) -> None:
    store = StateFile(tmp_path / "ota.json")
    assert store.load() == OtaRecord()
    first = OtaRecord(phase=Phase.WAITING, job=JOB, from_version="1.0.0", since=datetime(2026, 1, 1, tzinfo=UTC))
    store.save(first)
    second = first.model_copy(update={"phase": Phase.DOWNLOADING})
    store.save(second)
    assert StateFile(tmp_path / "ota.json").load() == second
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ota.json"]


def test_an_unreadable_state_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "ota.json").write_text('{"phase": "flying"}')
    with pytest.raises(OtaStateError, match="action=keep the file"):
        StateFile(tmp_path / "ota.json").load()
