"""Release slots as directories with an atomically switched ``current`` symlink: the layout the ``sim`` and
``venv-slots`` shims share (and ``firmware-shims/lockerfleet-trial-start`` reads)::

    <base>/releases/<version>/            one slot; ``.complete`` marks a finished install
    <base>/current -> releases/<version>  what starts next (switched by rename(2), never ``ln -sfn``)
    <base>/previous -> releases/<version> what a rollback returns to
    <base>/trial                          the version on trial, until committed
    <base>/attempts                       starts of the trial slot counted by the platform
"""

import os
import shutil
import tarfile
from pathlib import Path

from node_agent.ota.shims.base import ShimError
from node_agent.ota.store import fsync_dir, write_atomically

COMPLETE = ".complete"


class SlotDirectory:
    """Slots under ``base``; subclasses fill a slot in :meth:`populate`."""

    name = "slots"

    def __init__(self, base: Path) -> None:
        self.base = base
        self.releases = base / "releases"

    # -- what a subclass provides ------------------------------------------------------------------------

    def populate(self, slot: Path, version: str, artifact: Path) -> None:
        """Fill the empty directory ``slot`` from ``artifact``."""
        raise NotImplementedError

    def restart(self) -> None:
        """Nothing to do here: the caller starts the agent again (a process supervisor, or the simulator)."""

    # -- the shim interface ----------------------------------------------------------------------------------

    def current(self) -> str | None:
        """The version ``current`` points at."""
        return self._target("current")

    def previous(self) -> str | None:
        """The version ``previous`` points at."""
        return self._target("previous")

    def slot(self, version: str) -> Path:
        """The directory of ``version``'s slot."""
        if not version or "/" in version or version.startswith("."):
            raise ShimError(f"{version!r} cannot name a slot")
        return self.releases / version

    def complete(self, version: str) -> bool:
        """True when ``version``'s slot finished installing."""
        return (self.slot(version) / COMPLETE).exists()

    def install(self, version: str, artifact: Path) -> None:
        """Install into a fresh slot, marked complete only at the end."""
        if version in (self.current(), self.previous()):
            raise ShimError(f"{version} is the current or previous slot; it is never installed over")
        slot = self.slot(version)
        if slot.exists():
            shutil.rmtree(slot)  # half-installed by a run that died, or left by a failed update
        slot.mkdir(parents=True)
        self.populate(slot, version, artifact)
        write_atomically(slot / COMPLETE, version.encode())
        fsync_dir(self.releases)

    def discard(self, version: str) -> None:
        """Delete an unused slot."""
        if version not in (self.current(), self.previous()):
            shutil.rmtree(self.slot(version), ignore_errors=True)

    def switch(self, version: str) -> None:
        """Mark the trial, then point ``current`` at ``version`` with one rename."""
        old = self.current()
        if old == version:
            return  # done already (the trial was marked before the rename)
        if not self.complete(version):
            raise ShimError(f"the slot of {version} is not completely installed; it is never switched to")
        if old is not None:
            self._link("previous", old)
        write_atomically(self.base / "attempts", b"0\n")
        write_atomically(self.base / "trial", f"{version}\n".encode())
        self._link("current", version)

    def trial(self) -> str | None:
        """The version on trial."""
        path = self.base / "trial"
        return path.read_text().strip() or None if path.exists() else None

    def boot_attempts(self) -> int:
        """Starts counted by the platform while on trial."""
        path = self.base / "attempts"
        if self.trial() is None or not path.exists():
            return 0
        text = path.read_text().strip()
        return int(text) if text.isdigit() else 0

    def commit(self) -> None:
        """End the trial and delete slots that are neither current nor previous."""
        self._end_trial()
        keep = {self.current(), self.previous()}
        for slot in self.releases.iterdir() if self.releases.exists() else ():
            if slot.name not in keep:
                shutil.rmtree(slot, ignore_errors=True)

    def rollback(self) -> None:
        """Point ``current`` back at ``previous`` and end the trial."""
        previous = self.previous()
        if previous is None:
            raise ShimError("there is no previous slot to roll back to")
        if self.current() != previous:
            self._link("current", previous)
        self._end_trial()

    # -- helpers ---------------------------------------------------------------------------------------------

    def _target(self, link: str) -> str | None:
        try:
            return Path(os.readlink(self.base / link)).name
        except FileNotFoundError:
            return None

    def _link(self, link: str, version: str) -> None:
        """Point ``link`` at ``version``'s slot atomically: a symlink made under a temp name, then renamed."""
        self.base.mkdir(parents=True, exist_ok=True)
        tmp = self.base / f".{link}.tmp"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(Path("releases") / version)
        os.replace(tmp, self.base / link)
        fsync_dir(self.base)

    def _end_trial(self) -> None:
        for name in ("trial", "attempts"):
            (self.base / name).unlink(missing_ok=True)
        fsync_dir(self.base)


def unpack(artifact: Path, into: Path) -> None:
    """Unpack a tar artifact into ``into``, refusing links out of it and special files (tarfile's data filter)."""
    try:
        with tarfile.open(artifact) as tar:
            tar.extractall(into, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise ShimError(f"cannot unpack {artifact.name}: {exc}") from exc
