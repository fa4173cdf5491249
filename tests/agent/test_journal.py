"""The command journal: what is begun survives a crash as unfinished, ids are never journaled twice, old entries go."""

import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from node_agent.journal import MAX_REJECTED_BYTES, MAX_REJECTED_ROWS, Journal, JournalError
from schemas import encode
from tests import samples

REPO = Path(__file__).resolve().parents[2]
COMMAND = encode(samples.open_command())
RESULT = encode(samples.open_result())
EXPIRES = samples.T0 + timedelta(seconds=30)


class FakeClock:
    """A settable UTC clock."""

    def __init__(self, start: datetime = samples.T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        """Move the clock by ``delta`` (negative steps back, as after an NTP correction)."""
        self.now += delta


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "journal.sqlite3"


@pytest.fixture
def journal(path: Path, clock: FakeClock) -> Iterator[Journal]:
    store = Journal(path, clock)
    yield store
    store.close()


def test_opening_creates_parent_dirs_in_wal_mode(journal: Journal, path: Path) -> None:
    assert path.exists()
    assert path.with_name(path.name + "-wal").exists()


def test_boot_id_starts_at_one_and_grows_across_reopen(path: Path, clock: FakeClock) -> None:
    seen = []
    for _ in range(3):
        journal = Journal(path, clock)
        seen.append(journal.next_boot_id())
        journal.close()
    assert seen == [1, 2, 3]


def test_begin_then_finish_is_found_by_lookup(journal: Journal, clock: FakeClock) -> None:
    assert journal.lookup("cmd-42") is None
    journal.begin("cmd-42", EXPIRES, COMMAND)
    clock.advance(timedelta(seconds=2))

    begun = journal.lookup("cmd-42")
    assert begun is not None
    assert (begun.command_id, begun.command, begun.result, begun.finished) == ("cmd-42", COMMAND, None, False)
    assert begun.received_at == samples.T0  # the clock at begin, to the microsecond
    assert begun.expires_at == EXPIRES
    assert begun.received_at.tzinfo is UTC and begun.expires_at.tzinfo is UTC

    journal.finish("cmd-42", RESULT)
    done = journal.lookup("cmd-42")
    assert done is not None
    assert (done.result, done.finished, done.received_at) == (RESULT, True, samples.T0)
    assert journal.unfinished() == []


def test_finish_keeps_the_last_result(journal: Journal) -> None:
    journal.begin("cmd-1", EXPIRES, COMMAND)
    journal.finish("cmd-1", b'{"status":"accepted"}')
    journal.finish("cmd-1", RESULT)
    entry = journal.lookup("cmd-1")
    assert entry is not None
    assert entry.result == RESULT


def test_begin_twice_is_refused_and_keeps_the_first(journal: Journal, clock: FakeClock) -> None:
    journal.begin("cmd-1", EXPIRES, COMMAND)
    clock.advance(timedelta(seconds=5))
    with pytest.raises(JournalError, match="already journaled"):
        journal.begin("cmd-1", EXPIRES + timedelta(hours=1), b"{}")
    with pytest.raises(JournalError, match="already journaled"):
        journal.record("cmd-1", EXPIRES, b"{}", RESULT)
    entry = journal.lookup("cmd-1")
    assert entry is not None
    assert (entry.command, entry.expires_at, entry.received_at, entry.result) == (COMMAND, EXPIRES, samples.T0, None)


def test_finish_of_a_command_never_begun_is_refused(journal: Journal) -> None:
    with pytest.raises(JournalError, match="never begun"):
        journal.finish("cmd-404", RESULT)
    assert journal.lookup("cmd-404") is None


def test_record_stores_a_finished_command_in_one_step(journal: Journal) -> None:
    journal.record("cmd-late", EXPIRES, COMMAND, RESULT)
    entry = journal.lookup("cmd-late")
    assert entry is not None
    assert (entry.command, entry.result, entry.finished) == (COMMAND, RESULT, True)
    assert journal.unfinished() == []


def test_naive_times_are_refused(journal: Journal) -> None:
    with pytest.raises(ValueError, match="naive"):
        journal.begin("cmd-1", datetime(2026, 11, 24, 12), COMMAND)
    assert journal.lookup("cmd-1") is None


def test_unfinished_after_close_without_finish_oldest_first(path: Path, clock: FakeClock) -> None:
    journal = Journal(path, clock)
    journal.begin("first", EXPIRES, b"1")
    clock.advance(timedelta(hours=-1))  # the clock stepped back: insertion order still decides
    journal.begin("second", EXPIRES, b"2")
    journal.record("answered", EXPIRES, b"3", RESULT)
    journal.begin("finished", EXPIRES, b"4")
    journal.finish("finished", RESULT)
    journal.close()

    reopened = Journal(path, clock)
    try:
        entries = reopened.unfinished()
    finally:
        reopened.close()
    assert [(e.command_id, e.command, e.finished) for e in entries] == [("first", b"1", False), ("second", b"2", False)]


def test_kill_9_mid_command_leaves_it_unfinished_and_intact(path: Path, clock: FakeClock) -> None:
    payload = bytes(range(256)) * 16  # every byte value: the BLOB must come back bit for bit
    script = textwrap.dedent(
        f"""
        import os, signal
        from datetime import datetime
        from pathlib import Path
        from node_agent.journal import Journal

        journal = Journal(Path({str(path)!r}), lambda: datetime.fromisoformat({samples.T0.isoformat()!r}))
        journal.next_boot_id()
        journal.record("answered", datetime.fromisoformat({EXPIRES.isoformat()!r}), b"c", b"r")
        journal.begin("in-flight", datetime.fromisoformat({EXPIRES.isoformat()!r}), {payload!r})
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    crashed = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, timeout=30, check=False)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr.decode()

    journal = Journal(path, clock)
    try:
        assert journal.next_boot_id() == 2
        unfinished = journal.unfinished()
        answered = journal.lookup("answered")
    finally:
        journal.close()
    assert [e.command_id for e in unfinished] == ["in-flight"]
    entry = unfinished[0]
    assert (entry.command, entry.received_at, entry.expires_at, entry.result) == (payload, samples.T0, EXPIRES, None)
    assert answered is not None
    assert answered.result == b"r"


def test_prune_forgets_only_finished_commands_expired_beyond_retention(journal: Journal, clock: FakeClock) -> None:
    now = clock.now
    retention = timedelta(days=7)
    journal.record("old-done", now - timedelta(days=8), COMMAND, RESULT)
    journal.begin("old-unfinished", now - timedelta(days=30), COMMAND)
    journal.record("recent-done", now - timedelta(days=6), COMMAND, RESULT)
    journal.record("at-horizon", now - retention, COMMAND, RESULT)
    journal.begin("live", now + timedelta(seconds=30), COMMAND)

    assert journal.prune(retention) == 1
    assert journal.lookup("old-done") is None
    for kept in ("old-unfinished", "recent-done", "at-horizon", "live"):
        assert journal.lookup(kept) is not None, kept
    assert [e.command_id for e in journal.unfinished()] == ["old-unfinished", "live"]

    clock.advance(timedelta(days=2))
    assert journal.prune(retention) == 2  # recent-done and at-horizon are now past the horizon
    assert journal.prune(retention) == 0
    assert [e.command_id for e in journal.unfinished()] == ["old-unfinished", "live"]


def test_rejected_payloads_are_truncated_and_newest_first(journal: Journal, clock: FakeClock) -> None:
    big = b"\xff" + b"x" * (MAX_REJECTED_BYTES * 3)
    journal.keep_rejected("lockers/v1/node-1/command", big, "oversized", "too big")
    clock.advance(timedelta(seconds=1))
    journal.keep_rejected("lockers/v1/node-1/command", b"{", "malformed", "invalid JSON")

    newest, oldest = journal.rejected()
    assert (newest.payload, newest.reason, newest.detail, newest.received_at) == (
        b"{",
        "malformed",
        "invalid JSON",
        samples.T0 + timedelta(seconds=1),
    )
    assert oldest.payload == big[:MAX_REJECTED_BYTES]
    assert (oldest.topic, oldest.reason, oldest.received_at) == ("lockers/v1/node-1/command", "oversized", samples.T0)
    assert journal.rejected(limit=1) == [newest]


def test_rejected_table_is_capped_to_the_newest_rows(journal: Journal) -> None:
    extra = 7
    for i in range(MAX_REJECTED_ROWS + extra):
        journal.keep_rejected("t", str(i).encode(), "invalid", f"#{i}")
    kept = journal.rejected(limit=MAX_REJECTED_ROWS * 2)
    assert len(kept) == MAX_REJECTED_ROWS
    assert kept[0].payload == str(MAX_REJECTED_ROWS + extra - 1).encode()
    assert kept[-1].payload == str(extra).encode()
