"""The OTA driver: runs the pure machine against a shim, the network and the disk.

Wiring for the agent:

- at start, before anything else: ``driver.boot()`` (counts a trial start, notices a platform rollback);
- once connected: a task running ``await driver.run()``; it returns :attr:`RunOutcome.RESTART` when the agent must
  stop and start again (then the agent closes its stores and calls ``shim.restart()``);
- an ``update`` command: ``driver.request(command)``; a ``cancel`` of it: ``driver.cancel(command_id)``;
- every :class:`~node_agent.ota.machine.Progress` goes to ``report`` (the agent wraps it with :func:`ota_event`).

Every transition is persisted before the step it leads to starts, so a crash anywhere resumes from the record.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from node_agent.ota.download import DownloadError, download, forget
from node_agent.ota.machine import (
    Action,
    Booted,
    Cancelled,
    Committed,
    Downloaded,
    DownloadFailed,
    DownloadProgressed,
    Event,
    GateChecked,
    HealthChecked,
    Installed,
    InstallFailed,
    Policy,
    Progress,
    Refused,
    Reported,
    Requested,
    RolledBack,
    Switched,
    Verified,
    action_for,
    advance,
    final_report,
)
from node_agent.ota.shims.base import Shim, ShimError
from node_agent.ota.state import Cause, OtaRecord, Phase, UpdateJob
from node_agent.ota.store import StateFile, write_atomically
from schemas.command import UpdateCommand
from schemas.ota import OtaEvent, OtaReason, OtaState
from schemas.release import (
    RefusalReason,
    ReleaseManifest,
    ReleaseRefused,
    SignedRelease,
    TrustedKeys,
    next_floor,
    verify_artifact,
    verify_release,
)
from schemas.semver import SemVer

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

HealthCheck = Callable[[], Awaitable[str | None]]
"""The trial start's health check: None when healthy, else what is wrong."""
Gate = Callable[[], Cause | None]
"""The occupancy gate now: None when the node may go on, else why it waits (see :mod:`node_agent.ota.gate`)."""
Report = Callable[[Progress], None]
"""Hands one progress report to the outbox (durably, before returning)."""


class RunOutcome(StrEnum):
    """Why :meth:`OtaDriver.run_until_idle` returned."""

    IDLE = "idle"
    RESTART = "restart"
    """Stop the agent and call ``shim.restart()``: the next start runs the slot the update switched to."""


@dataclass(frozen=True)
class OtaConfig:
    """Where the driver keeps its files and what it checks releases against."""

    data_dir: Path
    """Holds ``ota.json`` and the download (shared by every release: keep it outside the slots)."""
    trusted_keys: Path
    """The pinned release keys (``trusted_keys.json``); replaced on commit of a release that rotates them."""
    hardware_model: str
    running_version: str
    """What runs when the shim has no slot yet (a node set up by hand)."""
    node_id: str = "node"
    policy: Policy = field(default_factory=Policy)
    gate_poll_s: float = 30.0
    """How often a deferred update asks the gate again (each ask reports ``deferred``, resetting step timeouts)."""
    download_retry_s: float = 30.0
    health_timeout_s: float = 60.0


class OtaDriver:
    """Performs the machine's actions on one node."""

    def __init__(
        self,
        config: OtaConfig,
        shim: Shim,
        *,
        client: Callable[[], httpx.AsyncClient],
        health: HealthCheck,
        gate: Gate,
        report: Report,
        now: Callable[[], datetime],
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.config = config
        self.shim = shim
        self._client = client
        self._health = health
        self._gate = gate
        self._report = report
        self._now = now
        self._sleep = sleep
        self._store = StateFile(config.data_dir / "ota.json")
        self.record = self._store.load()
        self._wake = asyncio.Event()

    @property
    def running_version(self) -> str:
        """The version this node runs."""
        return self.shim.current() or self.config.running_version

    def artifact_path(self) -> Path:
        """Where the artifact of the update in progress is downloaded."""
        return self.config.data_dir / "ota-artifact"

    # -- entry points ----------------------------------------------------------------------------------------

    def boot(self) -> None:
        """Tell the machine the agent started (a trial start is counted here, before anything can fail)."""
        self._feed(Booted(self.shim.current(), self.shim.boot_attempts()))

    def request(self, command: UpdateCommand) -> None:
        """Accept an update command, or report at once why it is refused (the running slot untouched)."""
        job = UpdateJob(
            command_id=command.command_id,
            rollout_id=command.rollout_id,
            release=command.release,
            artifact_urls=command.artifact_urls,
            rollback=command.rollback,
        )
        repeat = self.record.job is not None and self.record.job.command_id == job.command_id
        refusal = None if repeat else self._refusal(job)
        if refusal is not None:
            record = OtaRecord(phase=Phase.FAILED, job=job, from_version=self.running_version, cause=refusal)
            log.warning("update refused node=%s command_id=%s reason=%s", self.config.node_id, job.command_id, refusal)
            self._report(final_report(record))
            return
        self._feed(Requested(job, self.running_version))
        self._wake.set()

    def cancel(self, command_id: str) -> None:
        """Withdraw an update that has not switched yet (afterwards it ends in commit or rollback)."""
        self._feed(Cancelled(command_id))
        self._wake.set()

    async def run(self) -> RunOutcome:
        """Work on updates as they come; return only when the agent must restart."""
        while True:
            if await self.run_until_idle() is RunOutcome.RESTART:
                return RunOutcome.RESTART
            await self._wake.wait()
            self._wake.clear()

    async def run_until_idle(self) -> RunOutcome:
        """Perform actions until nothing is left to do or a restart is due."""
        while (action := action_for(self.record)) is not Action.NONE:
            if action is Action.RESTART:
                log.info("ota restart node=%s phase=%s", self.config.node_id, self.record.phase)
                return RunOutcome.RESTART
            await self._perform(action)
        return RunOutcome.IDLE

    # -- actions ---------------------------------------------------------------------------------------------

    async def _perform(self, action: Action) -> None:
        job = self.record.job
        assert job is not None
        if action is Action.CHECK_GATE:
            blocked = self._gate()
            self._feed(GateChecked(blocked))
            if blocked is not None:
                await self._sleep(self.config.gate_poll_s)
        elif action is Action.DOWNLOAD:
            await self._download(job)
        elif action is Action.VERIFY:
            self._feed(await asyncio.to_thread(self._verify, job))
        elif action is Action.INSTALL:
            self._feed(await asyncio.to_thread(self._install, job))
        elif action is Action.SWITCH:
            await asyncio.to_thread(self.shim.switch, _version(job))
            self._feed(Switched())
        elif action is Action.HEALTH_CHECK:
            self._feed(HealthChecked(await self._check_health()))
        elif action is Action.COMMIT:
            await asyncio.to_thread(self.shim.commit)
            self._feed(Committed(self._commit_keys_and_floor(job)))
        elif action is Action.ROLL_BACK:
            await asyncio.to_thread(self.shim.rollback)
            self._feed(RolledBack())
        elif action is Action.FINISH:
            await asyncio.to_thread(self._clean_up, job)
            self._report(final_report(self.record))
            self._feed(Reported())

    async def _download(self, job: UpdateJob) -> None:
        manifest = _manifest(job)
        step = max(manifest.size // 10, 1)
        last = [0]

        def progressed(done: int) -> None:
            if done - last[0] >= step or done == manifest.size:
                last[0] = done
                self._feed(DownloadProgressed(done))

        try:
            await download(self._client(), job.artifact_urls, self.artifact_path(), manifest.size, progressed)
        except DownloadError as exc:
            self._feed(DownloadFailed(str(exc), exc.retryable))
            if self.record.phase is Phase.DOWNLOADING:
                await self._sleep(self.config.download_retry_s)
            return
        self._feed(Downloaded())

    def _verify(self, job: UpdateJob) -> Event:
        try:
            manifest = self._verified_manifest(_signed(job))
            verify_artifact(self.artifact_path(), manifest)
        except ReleaseRefused as exc:
            return Refused(exc.reason.value, exc.detail)
        return Verified()

    def _install(self, job: UpdateJob) -> Event:
        try:
            self.shim.install(_version(job), self.artifact_path())
        except (ShimError, OSError) as exc:
            return InstallFailed(str(exc)[:240])
        return Installed()

    async def _check_health(self) -> str | None:
        try:
            async with asyncio.timeout(self.config.health_timeout_s):
                return await self._health()
        except TimeoutError:
            return f"no answer within {self.config.health_timeout_s:g} s"

    def _commit_keys_and_floor(self, job: UpdateJob) -> SemVer:
        manifest = _manifest(job)
        if manifest.trusted_keys:
            keys = TrustedKeys(keys=manifest.trusted_keys)
            write_atomically(self.config.trusted_keys, keys.model_dump_json(indent=1).encode())
            log.info("release keys rotated node=%s keys=%d", self.config.node_id, len(manifest.trusted_keys))
        return next_floor(self.record.floor, manifest)

    def _clean_up(self, job: UpdateJob) -> None:
        forget(self.artifact_path())
        version = job.version
        if version is not None and version != self.shim.current():
            self.shim.discard(version)

    # -- checks ----------------------------------------------------------------------------------------------

    def _refusal(self, job: UpdateJob) -> Cause | None:
        if job.rollback:
            previous = self.shim.previous()
            if previous is None or previous == self.shim.current():
                return Cause(code=OtaReason.NO_PREVIOUS_SLOT, detail="nothing to roll back to on this node")
            return None
        try:
            self._verified_manifest(_signed(job))
        except ReleaseRefused as exc:
            return Cause(code=exc.reason.value, detail=exc.detail)
        return None

    def _verified_manifest(self, signed: SignedRelease) -> ReleaseManifest:
        try:
            keys = TrustedKeys.model_validate_json(self.config.trusted_keys.read_bytes()).mapping()
        except (OSError, ValueError) as exc:
            detail = f"no readable pinned keys at {self.config.trusted_keys}: install trusted_keys.json ({exc})"
            raise ReleaseRefused(RefusalReason.UNKNOWN_KEY, detail[:240]) from exc
        return verify_release(
            signed,
            keys,
            now=self._now(),
            hardware_model=self.config.hardware_model,
            installed_version=_semver(self.running_version),
            floor=self.record.floor,
            allow_not_newer=str(signed.manifest.version) == self.running_version,  # a repeat: reported succeeded
        )

    # -- the machine -----------------------------------------------------------------------------------------

    def _feed(self, event: Event) -> None:
        before = self.record
        step = advance(before, event, self._now(), self.config.policy)
        if step.state != before:
            self._store.save(step.state)
            self.record = step.state
            if step.state.phase is not before.phase:
                log.info(
                    "ota node=%s command_id=%s phase=%s cause=%s",
                    self.config.node_id,
                    step.state.job.command_id if step.state.job else before.job.command_id if before.job else "-",
                    step.state.phase,
                    step.state.cause or "-",
                )
        for report in step.reports:
            self._report(report)


def ota_event(report: Progress, **envelope: Any) -> OtaEvent:
    """The contract's ``ota`` event for ``report``; ``envelope`` is the agent's node_id, boot_id, seq, ts, replayed."""
    downloading = report.state is OtaState.DOWNLOADING
    return OtaEvent(
        **envelope,
        rollout_id=report.rollout_id,
        command_id=report.command_id,
        state=report.state,
        reason=report.reason,
        detail=report.detail[:256] or None,
        from_version=_semver(report.from_version),
        to_version=_semver(report.to_version),
        bytes_done=report.bytes_done if downloading else None,
        bytes_total=report.bytes_total if downloading else None,
    )


def _semver(text: str | None) -> SemVer | None:
    try:
        return SemVer.parse(text) if text else None
    except ValueError:
        return None  # e.g. 0.0.0+source: a tree never installed as a release


def _signed(job: UpdateJob) -> SignedRelease:
    assert job.release is not None, "only a rollback carries no release"
    return job.release


def _manifest(job: UpdateJob) -> ReleaseManifest:
    return _signed(job).manifest


def _version(job: UpdateJob) -> str:
    return str(_manifest(job).version)


__all__ = ["Gate", "HealthCheck", "OtaConfig", "OtaDriver", "Report", "RunOutcome", "ota_event"]
