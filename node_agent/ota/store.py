"""The OTA state on disk: one small JSON file replaced atomically (write a temp file, fsync, rename, fsync the dir).

A power cut leaves either the old or the new document, never a mix. The file lives in the agent's data dir, which
every release shares, so the release that starts after a switch reads what the one before it wrote.
"""

import os
from pathlib import Path

from pydantic import ValidationError

from node_agent.ota.state import STATE_FORMAT, OtaRecord


class OtaStateError(RuntimeError):
    """The persisted OTA state cannot be read."""


class StateFile:
    """Load and save the node's :class:`OtaRecord`."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> OtaRecord:
        """The saved state; idle when nothing was ever saved."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return OtaRecord()
        try:
            state = OtaRecord.model_validate_json(raw)
        except ValidationError as exc:
            raise OtaStateError(
                f"{self.path} is not a readable OTA state ({exc.error_count()} errors): "
                "action=keep the file for inspection, then delete it to let the node accept updates again"
            ) from exc
        if state.format != STATE_FORMAT:
            raise OtaStateError(f"{self.path} has format {state.format}, this release reads {STATE_FORMAT}")
        return state

    def save(self, state: OtaRecord) -> None:
        """Replace the saved state, durably, when this returns."""
        write_atomically(self.path, state.model_dump_json(indent=1).encode())


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old or the new content, durably on return."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    """Make the entries of ``directory`` (a rename, a new file) durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
