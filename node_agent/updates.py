"""The agent's updates: the OTA driver (:mod:`node_agent.ota`) wired to one locker's settings, occupancy, trial-start
health check and event channel.

The driver is built and told about the start (:meth:`Updates.boot`) before the agent opens anything, so a release
that fails while starting still has its trial start counted. Reports made before the agent can publish are held and
handed over by :meth:`Updates.attach`.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from node_agent.hardware import Hardware
from node_agent.ota import (
    GatePolicy,
    Occupancy,
    OtaConfig,
    OtaDriver,
    Policy,
    Progress,
    RunOutcome,
    Shim,
    check_gate,
    shim_from_name,
)
from node_agent.ota.state import Cause
from node_agent.settings import AgentSettings

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

DEFAULT_BASES = {"venv-slots": Path("/opt/lockerfleet"), "tryboot": Path("/boot/firmware")}
"""Where each shim keeps its slots unless ``--base`` says otherwise (``sim``: ``data-dir/slots``)."""


def new_http_client() -> httpx.AsyncClient:
    """The client artifacts are downloaded with; httpx is imported only now (a locker not updating doesn't carry it).

    Its timeout is per read, not per download: a slow link resumes where a timed-out read stopped. Waiting for a
    free connection of the pool never times out: it is no download failure (a simulator's nodes share one pool).
    """
    import httpx  # noqa: PLC0415

    return httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=10.0, pool=None), follow_redirects=True)


class Host(Protocol):
    """What the updater needs from the agent once it runs."""

    def occupancy(self) -> Occupancy:
        """The locker's use right now (doors, opens in flight, ledger, battery)."""
        ...

    async def health_problem(self) -> str | None:
        """The trial start's health check: None when healthy, else what is wrong."""
        ...

    def publish_ota(self, report: Progress) -> None:
        """Queue one progress report on the event channel (durably)."""
        ...


def shim_for(settings: AgentSettings) -> Shim:
    """The shim ``settings`` choose, keeping its slots under ``--base`` or the shim's default place."""
    base = settings.base or DEFAULT_BASES.get(settings.ota_shim, settings.data_dir / "slots")
    return shim_from_name(settings.ota_shim, base)


class Updates:
    """One locker's OTA driver and the agent it reports to."""

    def __init__(
        self,
        settings: AgentSettings,
        hardware_model: str,
        *,
        now: Callable[[], datetime],
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.shim = shim_for(settings)
        self._owns_http = http is None
        self._http = http
        self._now = now
        self._gate_policy = GatePolicy(
            lookahead=timedelta(seconds=settings.ota_lookahead_s), min_battery_pct=settings.ota_min_battery_pct
        )
        self._host: Host | None = None
        self._held: list[Progress] = []
        config = OtaConfig(
            data_dir=settings.data_dir,
            trusted_keys=settings.trusted_keys_file or settings.data_dir / "trusted_keys.json",
            hardware_model=hardware_model,
            running_version=settings.firmware_version,
            node_id=settings.node_id,
            policy=Policy(max_starts=settings.max_starts),
            gate_poll_s=settings.ota_gate_poll_s,
            health_timeout_s=settings.ota_health_timeout_s,
        )
        self.driver = OtaDriver(
            config, self.shim, client=self._client, health=self._health, gate=self._gate, report=self._report, now=now
        )

    @property
    def running_version(self) -> str:
        """The release this node runs (what its birth reports)."""
        return self.driver.running_version

    def boot(self) -> None:
        """Count this start (a trial start of a new release, or the return to the previous one)."""
        self.driver.boot()

    def attach(self, host: Host) -> None:
        """Report through ``host`` from now on, starting with what was held."""
        self._host = host
        held, self._held = self._held, []
        for report in held:
            host.publish_ota(report)

    async def run(self) -> RunOutcome:
        """Work on updates until the agent must restart into another slot."""
        return await self.driver.run()

    async def aclose(self) -> None:
        """Close the HTTP client if this updater made it."""
        if self._owns_http and self._http is not None:
            await self._http.aclose()

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = new_http_client()
        return self._http

    def _report(self, report: Progress) -> None:
        if self._host is None:
            self._held.append(report)
        else:
            self._host.publish_ota(report)

    def _gate(self) -> Cause | None:
        assert self._host is not None, "the driver runs only once the agent is attached"
        return check_gate(self._host.occupancy(), self._now(), self._gate_policy)

    async def _health(self) -> str | None:
        assert self._host is not None, "the driver runs only once the agent is attached"
        return await self._host.health_problem()


def board_self_test(hardware: Hardware) -> str | None:
    """Read every device through gpiozero (doors, relays, battery, temperature): None when all answer."""
    try:
        for compartment in hardware.compartments.values():
            compartment.door_is_open()
            compartment.relay_is_on()
        hardware.battery.read()
        hardware.temperature.read_c()
    except Exception as exc:  # any device error fails the self-test, with its text
        return f"board self-test: {type(exc).__name__}: {exc}"[:240]
    return None


def stores_open(*checks: Callable[[], object]) -> str | None:
    """Run one cheap read per store (journal, ledger, outbox): None when every store answers."""
    try:
        for check in checks:
            check()
    except sqlite3.Error as exc:
        return f"store not usable: {exc}"[:240]
    return None


__all__ = ["DEFAULT_BASES", "Host", "Updates", "board_self_test", "shim_for", "stores_open"]
