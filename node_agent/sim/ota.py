"""Updates on simulated lockers: the factory slot every node starts from, and injected trial-start failures.

A simulated node uses the ``sim`` shim (slots are directories, restarts happen in-process). Like a locker that left
the factory with a release installed, it gets a committed slot of its starting version before its first start, so a
failed update has a slot to roll back to.
"""

import io
import random
import tarfile
import tempfile
from collections.abc import Collection
from pathlib import Path

from node_agent.agent import HealthCheck
from node_agent.ota import Shim


def factory_install(shim: Shim, version: str) -> None:
    """Install, switch to and commit ``version`` (an artifact holding just its version) unless a slot runs already."""
    if shim.current() is not None:
        return
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("VERSION")
        data = version.encode()
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with tempfile.TemporaryDirectory() as scratch:
        artifact = Path(scratch) / "factory.tar"
        artifact.write_bytes(buffer.getvalue())
        shim.install(version, artifact)
    shim.switch(version)
    shim.commit()


def failing_nodes(node_ids: list[str], named: Collection[str], share: float, rng: random.Random) -> frozenset[str]:
    """The nodes whose trial starts fail: those ``named`` plus a random ``share`` of the rest (``--ota-fail``)."""
    unknown = set(named) - set(node_ids)
    if unknown:
        raise ValueError(f"--ota-fail names nodes this process does not run: {', '.join(sorted(unknown))}")
    return frozenset(n for n in node_ids if n in named or rng.random() < share)


async def _injected_failure() -> str | None:
    return "sim fault injected with --ota-fail: this node's trial start is never healthy"


INJECTED_FAILURE: HealthCheck = _injected_failure
"""The extra health check of a node in ``--ota-fail``: every trial start fails, so every update rolls back."""
