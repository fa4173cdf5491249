"""Platform shims: how a platform installs a release into a new slot, switches to it, counts its trial starts,
commits it or rolls it back. Chosen by name from configuration, like gpiozero's pin factories (:func:`shim_from_name`).
"""

from pathlib import Path

from node_agent.ota.shims.base import Shim, ShimError
from node_agent.ota.shims.sim import SimShim
from node_agent.ota.shims.tryboot import TrybootShim
from node_agent.ota.shims.venv_slots import VenvSlotsShim

SHIMS = ("venv-slots", "sim", "tryboot")
"""Names accepted by :func:`shim_from_name`."""


def shim_from_name(name: str, base_dir: Path) -> Shim:
    """The shim called ``name``, keeping its slots (or, for ``tryboot``, its boot partition) under ``base_dir``."""
    if name == "venv-slots":
        return VenvSlotsShim(base_dir)
    if name == "sim":
        return SimShim(base_dir)
    if name == "tryboot":
        return TrybootShim(base_dir)
    raise ValueError(f"unknown OTA shim {name!r}: choose one of {', '.join(SHIMS)}")


__all__ = ["SHIMS", "Shim", "ShimError", "SimShim", "TrybootShim", "VenvSlotsShim", "shim_from_name"]
