"""Files that hold secrets (the stores: keys, codes, webhook secrets) are the owner's alone: 0600 in 0700 directories.

Modes are set with ``chmod`` right after creation, whatever the process umask, and before anything is written.
SQLite creates a database's ``-wal``, ``-shm`` and ``-journal`` files with the database file's mode, so creating the
database file private keeps them private too. Files and directories that already exist keep their mode (an operator
may have reasons), but one that others can reach is logged at start with the command that closes it.
"""

import logging
import os
import stat
from pathlib import Path
from typing import Final

log = logging.getLogger(__name__)

PRIVATE_FILE: Final = 0o600
PRIVATE_DIR: Final = 0o700
SQLITE_COMPANIONS: Final = ("-wal", "-shm", "-journal")
"""Files SQLite keeps beside a database; they hold the same data."""


def private_dir(path: Path) -> None:
    """Create ``path`` (and missing parents) 0700; warn when an existing ``path`` is open to group or others."""
    if path.is_dir():
        _warn_if_open(path, PRIVATE_DIR)
        return
    _make_dirs(path)


def private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 (missing parents 0700) unless it exists; warn about wider modes.

    The warning covers ``path`` and SQLite's companion files beside it.
    """
    if not path.parent.is_dir():
        _make_dirs(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    except FileExistsError:
        for existing in (path, *(path.with_name(path.name + suffix) for suffix in SQLITE_COMPANIONS)):
            if existing.exists():
                _warn_if_open(existing, PRIVATE_FILE)
        return
    try:
        os.fchmod(fd, PRIVATE_FILE)  # os.open's mode is narrowed by the umask; this sets it exactly
    finally:
        os.close(fd)


def is_open(path: Path) -> bool:
    """Whether group or others have any permission on ``path``."""
    return bool(path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO))


def _make_dirs(path: Path) -> None:
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=PRIVATE_DIR)
        except FileExistsError:  # made meanwhile by another process: its mode is its maker's
            continue
        directory.chmod(PRIVATE_DIR)


def _warn_if_open(path: Path, mode: int) -> None:
    if is_open(path):
        log.warning(
            "secrets open to other users path=%s mode=%o action=chmod %o %s",
            path,
            stat.S_IMODE(path.stat().st_mode),
            mode,
            path,
        )
