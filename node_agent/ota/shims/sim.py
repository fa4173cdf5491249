"""The ``sim`` shim, for the simulator and tests: slots are plain directories holding the unpacked artifact, the
switch is the same atomic symlink rename as on a Pi, and a restart happens in-process (the caller builds a new agent).
"""

from pathlib import Path

from node_agent.ota.shims.slots import SlotDirectory, unpack


class SimShim(SlotDirectory):
    """Directory slots under ``base``; the artifact's files land in ``releases/<version>/files``."""

    name = "sim"

    def populate(self, slot: Path, version: str, artifact: Path) -> None:
        """Unpack the artifact."""
        unpack(artifact, slot / "files")


__all__ = ["SimShim"]
