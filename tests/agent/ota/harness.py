"""A node for driver tests: the sim shim on a temp dir, artifacts served by an in-process HTTP transport that
honours Range, a pinned key, a fixed clock, and a crash that can be injected at any numbered step."""

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from node_agent.ota.driver import OtaConfig, OtaDriver, RunOutcome
from node_agent.ota.machine import Policy, Progress
from node_agent.ota.shims.sim import SimShim
from node_agent.ota.state import Cause
from schemas.command import UpdateCommand
from schemas.release import SignedRelease
from tests.agent.ota.releases import HARDWARE, T0, TRUSTED, artifact, signed

URL = "http://artifacts.test/lockerfleet-1.1.0.tar.gz"
BIG = {"VERSION": b"1.1.0", "blob.bin": random.Random(1).randbytes(300_000)}
"""An artifact big enough to arrive in several chunks."""


class Crash(BaseException):
    """Stands in for kill -9: nothing catches it, nothing after it runs."""


@dataclass
class Faults:
    """Counts steps; the step numbered ``crash_at`` raises :class:`Crash`."""

    crash_at: int | None = None
    steps: int = 0

    def tick(self) -> None:
        self.steps += 1
        if self.steps == self.crash_at:
            raise Crash(f"crash at step {self.steps}")


class CrashingShim(SimShim):
    """The sim shim with a fault tick around every platform step, and one in the middle of filling a slot."""

    def __init__(self, base: Path, faults: Faults) -> None:
        super().__init__(base)
        self.faults = faults

    def populate(self, slot: Path, version: str, artifact: Path) -> None:
        super().populate(slot, version, artifact)
        self.faults.tick()  # files written, slot not yet marked complete

    def switch(self, version: str) -> None:
        self.faults.tick()
        super().switch(version)
        self.faults.tick()

    def commit(self) -> None:
        self.faults.tick()
        super().commit()
        self.faults.tick()

    def rollback(self) -> None:
        self.faults.tick()
        super().rollback()
        self.faults.tick()


@dataclass
class Node:
    """One node's disk, network and health; :meth:`driver` is one agent process."""

    root: Path
    faults: Faults = field(default_factory=Faults)
    healthy: bool = True
    gate_answers: list[Cause | None] = field(default_factory=list)
    artifacts: dict[str, bytes] = field(default_factory=dict)
    reports: list[Progress] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)
    now: datetime = T0
    started: list[str | None] = field(default_factory=list)
    """The slot each start ran, and whether it was complete (checked in :meth:`driver`)."""

    def __post_init__(self) -> None:
        self.shim = CrashingShim(self.root / "slots", self.faults)
        self.root.mkdir(parents=True, exist_ok=True)
        self.keys = self.root / "trusted_keys.json"
        self.keys.write_text(TRUSTED.model_dump_json())
        base = artifact("1.0.0")
        (self.root / "base.tar.gz").write_bytes(base)
        crash_at, self.faults.crash_at = self.faults.crash_at, None
        self.shim.install("1.0.0", self.root / "base.tar.gz")
        self.shim.switch("1.0.0")
        self.shim.commit()
        self.faults.crash_at, self.faults.steps = crash_at, 0

    def publish(self, version: str, data: bytes, url: str = URL, **release: Any) -> SignedRelease:
        self.artifacts[url] = data
        return signed(version, data, **release)

    def command(
        self, release: SignedRelease | None, command_id: str = "up-1", urls: tuple[str, ...] = (URL,)
    ) -> UpdateCommand:
        if release is None:
            return UpdateCommand(
                command_id=command_id,
                node_id="n1",
                issued_at=T0,
                expires_at=T0.replace(hour=13),
                rollout_id="ro-1",
                rollback=True,
            )
        return UpdateCommand(
            command_id=command_id,
            node_id="n1",
            issued_at=T0,
            expires_at=T0.replace(hour=13),
            rollout_id="ro-1",
            release=release,
            artifact_urls=urls,
        )

    def driver(self) -> OtaDriver:
        """A fresh agent process: it starts whatever slot is current (which must be complete)."""
        current = self.shim.current()
        assert current is not None and self.shim.complete(current), f"started a half-installed slot {current}"
        self.started.append(current)
        config = OtaConfig(
            data_dir=self.root / "data",
            trusted_keys=self.keys,
            hardware_model=HARDWARE,
            running_version=current,
            node_id="n1",
            policy=Policy(max_starts=3),
            gate_poll_s=0,
            download_retry_s=0,
        )
        client = httpx.AsyncClient(transport=httpx.MockTransport(self._serve))
        return OtaDriver(
            config,
            self.shim,
            client=lambda: client,
            health=self._health,
            gate=self._gate,
            report=self._report,
            now=lambda: self.now,
            sleep=_no_sleep,
        )

    def _report(self, report: Progress) -> None:
        """Keep the report, checking that a final outcome is only reported once the platform agrees with it."""
        if report.state.value == "succeeded":
            assert self.shim.current() == report.to_version and self.shim.trial() is None
        if report.state.value == "rolled_back":
            assert self.shim.current() == "1.0.0" and self.shim.trial() is None
        self.reports.append(report)

    async def _health(self) -> str | None:
        self.faults.tick()
        return None if self.healthy else "board self-test: relay A1 does not click"

    def _gate(self) -> Cause | None:
        return self.gate_answers.pop(0) if self.gate_answers else None

    async def _serve(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        data = self.artifacts.get(str(request.url))
        if data is None:
            return httpx.Response(404)
        start = int(request.headers.get("range", "bytes=0-").removeprefix("bytes=").split("-")[0])
        status, headers = (206, {"content-range": f"bytes {start}-{len(data) - 1}/{len(data)}"}) if start else (200, {})
        return httpx.Response(status, headers=headers, content=self._chunks(data[start:]))

    async def _chunks(self, data: bytes) -> AsyncIterator[bytes]:
        for offset in range(0, len(data), 64 * 1024):
            self.faults.tick()
            yield data[offset : offset + 64 * 1024]

    def final_states(self, command_id: str = "up-1") -> list[str]:
        return [r.state.value for r in self.reports if r.command_id == command_id and r.state.value in FINAL]

    def run_to_the_end(self, command: UpdateCommand | None = None) -> None:
        """Start agents until the update is over, as systemd would after every exit."""
        driver = self.driver()
        driver.boot()
        if command is not None:
            driver.request(command)
        while asyncio.run(driver.run_until_idle()) is RunOutcome.RESTART:
            driver = self.driver()
            driver.boot()


FINAL = {"succeeded", "failed", "rolled_back", "cancelled"}


async def _no_sleep(_seconds: float) -> None:
    await asyncio.sleep(0)
