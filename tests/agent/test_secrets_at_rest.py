"""Secrets at rest on a locker: the data directory and its SQLite files are the agent user's alone, and the node's
code key is kept only where the agent needs it (the ledger store), never in the command journal."""

import asyncio
import logging
import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from node_agent.agent import Agent
from node_agent.board import default_sim_profile
from node_agent.journal import Journal
from node_agent.settings import AgentSettings
from node_agent.sim import SimulatedBoard
from schemas import Channel, ProvisionKeyCommand, encode, topic
from schemas.command_trust import sign_command
from tests.samples import COMMAND_KEY

KEY = bytes.fromhex("5ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7")


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """The usual umask 022, under which a plain create gives 0644 files and 0755 directories."""
    before = os.umask(0o022)
    yield
    os.umask(before)


@pytest.fixture
def agent(tmp_path: Path, loose_umask: None) -> Iterator[Agent]:
    settings = AgentSettings(node_id="locker-1", data_dir=tmp_path / "data" / "locker-1")
    running = Agent(settings, SimulatedBoard(default_sim_profile()).hardware)
    yield running
    running.close()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def on_disk(database: Path) -> bytes:
    """Everything SQLite keeps of ``database``: the file and its companions."""
    files = [database, *(database.with_name(database.name + s) for s in ("-wal", "-shm", "-journal"))]
    return b"".join(f.read_bytes() for f in files if f.exists())


def provision(agent: Agent, key: bytes) -> None:
    now = datetime.now(UTC)
    command = ProvisionKeyCommand(
        command_id="key-1",
        node_id=agent.node_id,
        issued_at=now,
        expires_at=now + timedelta(minutes=1),
        key_hex=key.hex(),
    )
    command = sign_command(command, COMMAND_KEY)
    asyncio.run(agent.commands.execute(topic(agent.node_id, Channel.COMMAND), encode(command)))


def test_the_data_dir_and_every_store_file_are_private_whatever_the_umask(agent: Agent, tmp_path: Path) -> None:
    provision(agent, KEY)  # writes to the journal, the ledger store and the outbox: every -wal and -shm exists
    data_dir = agent.settings.data_dir
    files = sorted(p for p in data_dir.iterdir() if ".sqlite3" in p.name)
    assert {p.name for p in files} >= {"journal.sqlite3-wal", "ledger.sqlite3-shm", "outbox.sqlite3-wal"}
    assert {p.name: mode(p) for p in files} == {p.name: 0o600 for p in files}
    assert (mode(data_dir), mode(data_dir.parent)) == (0o700, 0o700)


def test_a_provisioned_key_is_in_the_ledger_store_and_nowhere_else(agent: Agent) -> None:
    provision(agent, KEY)
    assert agent.ledger_store.node_key() == KEY
    data_dir = agent.settings.data_dir
    assert KEY in on_disk(data_dir / "ledger.sqlite3")  # the search finds the key where it is kept
    for other in ("journal.sqlite3", "outbox.sqlite3"):
        stored = on_disk(data_dir / other)
        assert KEY not in stored and KEY.hex().encode() not in stored, other
    assert agent.journal.lookup("key-1") is not None  # still journaled: a redelivery is answered, not re-applied


def test_a_redelivered_provision_key_is_answered_from_the_journal(agent: Agent) -> None:
    provision(agent, KEY)
    provision(agent, KEY)
    entry = agent.journal.lookup("key-1")
    assert entry is not None and entry.finished


def test_a_data_dir_or_store_open_to_others_is_named_at_start_with_the_fix(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir = tmp_path / "agent-data"
    data_dir.mkdir()
    data_dir.chmod(0o755)
    journal_file = data_dir / "journal.sqlite3"
    Journal(journal_file, lambda: datetime.now(UTC)).close()
    journal_file.chmod(0o644)
    with caplog.at_level(logging.WARNING):
        Journal(journal_file, lambda: datetime.now(UTC)).close()
    assert f"action=chmod 700 {data_dir}" in caplog.text
    assert f"action=chmod 600 {journal_file}" in caplog.text
