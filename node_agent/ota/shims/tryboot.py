"""The ``tryboot`` shim: full-image A/B on a Raspberry Pi with the firmware's one-shot trial boot.

The bootloader's first FAT partition (``base``) holds ``autoboot.txt``::

    [all]
    tryboot_a_b=1
    boot_partition=2      # what every normal boot starts
    [tryboot]
    boot_partition=3      # what the next ``reboot '0 tryboot'`` starts, once

An image is written to the partition that neither runs nor is the normal boot, ``switch`` points ``[tryboot]`` at
it and ``restart`` runs ``reboot '0 tryboot'``. If the trial boot hangs or crashes, the next (watchdog) reboot is a
normal one: the firmware itself goes back to the old partition. ``commit`` makes the trial partition the normal boot.
Which partition booted, and whether by tryboot, comes from the device tree (``/proc/device-tree/chosen/bootloader``).
Slot versions, the previous partition and the trial live in ``lockerfleet-slots.json`` next to ``autoboot.txt``.
"""

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from node_agent.ota.shims.base import ShimError
from node_agent.ota.store import write_atomically

CHOSEN = Path("/proc/device-tree/chosen/bootloader")
Runner = Callable[[Sequence[str]], object]


def _run(argv: Sequence[str]) -> object:
    return subprocess.run(list(argv), check=True)


class TrybootShim:
    """A/B partitions ``partitions`` written through ``device`` (``{n}`` is the partition number)."""

    name = "tryboot"

    def __init__(
        self,
        base: Path = Path("/boot/firmware"),
        *,
        chosen: Path = CHOSEN,
        partitions: tuple[int, int] = (2, 3),
        device: str = "/dev/mmcblk0p{n}",
        run: Runner = _run,
    ) -> None:
        self.base = base
        self.chosen = chosen
        self.partitions = partitions
        self.device = device
        self._run = run

    # -- boot environment ------------------------------------------------------------------------------------

    def booted(self) -> int:
        """The partition this boot came from."""
        return _read_u32(self.chosen / "partition")

    def booted_by_tryboot(self) -> bool:
        """True when this boot was a one-shot trial boot."""
        return _read_u32(self.chosen / "tryboot") == 1

    def _state(self) -> dict[str, object]:
        path = self.base / "lockerfleet-slots.json"
        loaded: dict[str, object] = json.loads(path.read_text()) if path.exists() else {}
        return loaded

    def _save(self, state: dict[str, object]) -> None:
        write_atomically(self.base / "lockerfleet-slots.json", json.dumps(state, sort_keys=True).encode())

    def _versions(self) -> dict[str, str]:
        versions = self._state().get("versions", {})
        assert isinstance(versions, dict)
        return {str(k): str(v) for k, v in versions.items()}

    def _partition_of(self, version: str) -> int | None:
        return next((int(p) for p, v in self._versions().items() if v == version), None)

    def _other(self, partition: int) -> int:
        return self.partitions[1] if partition == self.partitions[0] else self.partitions[0]

    def _write_autoboot(self, normal: int, trial: int) -> None:
        text = f"[all]\ntryboot_a_b=1\nboot_partition={normal}\n[tryboot]\nboot_partition={trial}\n"
        write_atomically(self.base / "autoboot.txt", text.encode())

    # -- the shim interface ----------------------------------------------------------------------------------

    def current(self) -> str | None:
        """The version of the partition that booted."""
        return self._versions().get(str(self.booted()))

    def previous(self) -> str | None:
        """The version a rollback returns to."""
        previous = self._state().get("previous")
        return self._versions().get(str(previous)) if previous is not None else None

    def install(self, version: str, artifact: Path) -> None:
        """Write the image to the partition that is neither running nor the normal boot."""
        target = self._other(self.booted())
        state = self._state()
        versions = self._versions()
        versions.pop(str(target), None)  # not a slot until completely written
        self._save({**state, "versions": versions})
        try:
            with artifact.open("rb") as src, open(self.device.format(n=target), "r+b") as dst:
                shutil.copyfileobj(src, dst, 1024 * 1024)
                dst.flush()
                os.fsync(dst.fileno())
        except OSError as exc:
            raise ShimError(f"cannot write {version} to partition {target}: {exc}") from exc
        self._save({**self._state(), "versions": {**versions, str(target): version}})

    def discard(self, version: str) -> None:
        """Forget an unused partition's version (its bytes are overwritten by the next install)."""
        partition = self._partition_of(version)
        if partition is not None and version not in (self.current(), self.previous()):
            versions = self._versions()
            versions.pop(str(partition))
            self._save({**self._state(), "versions": versions})

    def switch(self, version: str) -> None:
        """Point the one-shot ``[tryboot]`` entry at ``version``'s partition; the normal boot stays as it is."""
        partition = self._partition_of(version)
        if partition is None:
            raise ShimError(f"no partition holds a complete {version}; it is never switched to")
        if partition == self.booted():
            return
        self._write_autoboot(normal=self.booted(), trial=partition)
        self._save({**self._state(), "previous": self.booted(), "trial": partition})

    def trial(self) -> str | None:
        """The version on trial."""
        trial = self._state().get("trial")
        return self._versions().get(str(trial)) if trial is not None else None

    def boot_attempts(self) -> int:
        """1 when this boot is the trial's one-shot boot; the firmware never tries a trial twice."""
        trial = self._state().get("trial")
        return int(trial is not None and self.booted() == trial and self.booted_by_tryboot())

    def commit(self) -> None:
        """Make the booted trial partition the normal boot."""
        booted = self.booted()
        self._write_autoboot(normal=booted, trial=self._other(booted))
        self._save({**self._state(), "trial": None})

    def rollback(self) -> None:
        """Make the previous partition the normal boot and end the trial."""
        previous = self._state().get("previous")
        if not isinstance(previous, int) or self.previous() is None:
            raise ShimError("there is no previous partition to roll back to")
        self._write_autoboot(normal=previous, trial=self._other(previous))
        self._save({**self._state(), "trial": None})

    def restart(self) -> None:
        """Reboot: once into the trial partition when one waits for its first boot, else normally."""
        trial = self._state().get("trial")
        self._run(["reboot", "0 tryboot"] if trial is not None and trial != self.booted() else ["reboot"])


def _read_u32(path: Path) -> int:
    try:
        return int.from_bytes(path.read_bytes()[:4], "big")
    except OSError as exc:
        raise ShimError(f"cannot read {path}: {exc} (is this a Pi with a tryboot-capable bootloader?)") from exc
