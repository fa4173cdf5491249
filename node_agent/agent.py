"""The agent of one locker: connection, birth and death, telemetry and door events, durable publishing.

Wiring only: the hardware is a :class:`~node_agent.hardware.Hardware`, durability lives in the journal and the
outbox, the MQTT session in :class:`~node_agent.link.Link`, commands in :class:`~node_agent.commands.CommandExecutor`,
the compartments (ledger, keypad, doors) in :class:`~node_agent.locker.Locker` and updates in
:class:`~node_agent.updates.Updates`. :meth:`Agent.run` returns only when an update needs a restart into another slot
(:func:`run_restarting` does that restart in-process for the ``sim`` shim).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import aiomqtt

from node_agent.commands import CommandExecutor
from node_agent.controller_key import TOFU_FILE, ControllerKey
from node_agent.hardware import Hardware
from node_agent.journal import Journal
from node_agent.keypad import Keypad, KeypadResult
from node_agent.ledger import Ledger
from node_agent.ledger_store import LedgerStore
from node_agent.link import Link, LinkConfig, Publication
from node_agent.locker import Locker
from node_agent.ota import Occupancy, Progress, RunOutcome, ota_event
from node_agent.outbox import Outbox
from node_agent.settings import AgentSettings
from node_agent.updates import Updates, board_self_test, stores_open
from schemas import (
    Battery,
    Channel,
    CompartmentInfo,
    CompartmentReading,
    DoorEvent,
    DoorState,
    LockState,
    StatusBirth,
    StatusDeath,
    Telemetry,
    encode,
    topic,
)
from schemas.codec import Message
from schemas.envelope import NodeEnvelope

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

PRUNE_EVERY_S = 3600.0
LEDGER_TICK_S = 1.0
"""How often holds past their deadline are freed."""
OTA_RETRY_S = 30.0
"""Pause before the updater repeats a step that raised (the step is persisted and safe to repeat)."""

HealthCheck = Callable[[], Awaitable[str | None]]
"""An extra trial-start check: None when healthy, else what is wrong (the simulator injects failures with these)."""


class _RestartDueError(Exception):
    """Raised inside :meth:`Agent.run`'s task group to stop every task for a restart into another slot."""


def utc_now() -> datetime:
    """The node's wall clock."""
    return datetime.now(UTC)


class Agent:
    """One locker's agent; ``await agent.run()`` until cancelled, then :meth:`close`."""

    def __init__(
        self,
        settings: AgentSettings,
        hardware: Hardware,
        *,
        now: Callable[[], datetime] = utc_now,
        http: httpx.AsyncClient | None = None,
        health_checks: Sequence[HealthCheck] = (),
    ) -> None:
        self.settings = settings
        self.node_id = settings.node_id
        self.hardware = hardware
        self._now = now
        # First of all: count this start, so a release that fails anywhere below is still rolled back in time.
        self.updates = Updates(settings, hardware.profile.hardware_model, now=now, http=http)
        self.updates.boot()
        self._health_checks = tuple(health_checks)
        self._closed = False
        key_file = settings.controller_key_file  # first: a missing or bad key file stops the start before any store
        self.controller_key = ControllerKey(key_file or settings.data_dir / TOFU_FILE, trust_first=key_file is None)
        self.journal = Journal(settings.data_dir / "journal.sqlite3", now)
        self.outbox = Outbox(settings.data_dir / "outbox.sqlite3", settings.outbox_capacity)
        self.ledger_store = LedgerStore(settings.data_dir / "ledger.sqlite3")
        self.boot_id = self.journal.next_boot_id()
        self._seq = itertools.count()
        self._dropped_total = 0
        self.telemetry_paused = False
        """While set, no telemetry is sampled (the simulator's stale fault: a hung sampler on a live connection)."""
        self.locker = Locker(
            self.node_id, hardware, self.ledger_store, now=now, envelope=self._envelope, emit=self._emit
        )
        self.commands = CommandExecutor(
            self.node_id,
            self.journal,
            self.locker,
            self.controller_key,
            now=now,
            envelope=self._envelope,
            emit=self._emit,
            update=self.updates.driver.request,
            cancel_update=self.updates.driver.cancel,
        )
        self.link = Link(
            LinkConfig(
                url=str(settings.mqtt_url),
                client_id=settings.node_id,
                broker_files=settings.broker_files(),
                keepalive_s=settings.keepalive_s,
                reconnect_max_s=settings.reconnect_max_s,
                replay_rate_per_s=settings.replay_rate_per_s,
            ),
            self.outbox,
            connection_status=self._connection_status,
            command_topic=topic(self.node_id, Channel.COMMAND),
            stored_topic=topic(self.node_id, Channel.STORED),
            on_command=self.commands.received,
        )
        self.updates.attach(self)

    # -- running ---------------------------------------------------------------------------------------------

    async def run(self) -> RunOutcome:
        """Recover from a crash, then serve until cancelled or until an update needs a restart (then returns
        :attr:`RunOutcome.RESTART`: close the agent and call ``updates.shim.restart()``)."""
        loop = asyncio.get_running_loop()

        def door_changed(compartment: str, is_open: bool) -> None:  # gpiozero's thread → this loop
            loop.call_soon_threadsafe(self._door_changed, compartment, is_open)

        self.hardware.on_door_change(door_changed)
        self.commands.recover()
        log.info(
            "agent started node=%s boot_id=%d version=%s backlog=%d",
            self.node_id,
            self.boot_id,
            self.updates.running_version,
            len(self.outbox),
        )
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self.link.run())
                group.create_task(self._telemetry_loop())
                group.create_task(self._prune_loop())
                group.create_task(self._ledger_loop())
                group.create_task(self._update_loop())
        except* _RestartDueError:
            log.info("agent stopping to restart node=%s into=%s", self.node_id, self.updates.shim.current())
        finally:
            # Commands in flight stop with the agent, on this loop: their relay is released and, with no final
            # result journaled, the next start reports them unknown.
            await self.commands.cancel_in_flight()
            await self.updates.aclose()
        return RunOutcome.RESTART  # the tasks never end by themselves: only a due restart gets here

    @property
    def ledger(self) -> Ledger:
        """The compartments' reservation ledger as kept now."""
        return self.locker.ledger

    @property
    def keypad(self) -> Keypad | None:
        """The code keypad, once a code key is provisioned."""
        return self.locker.keypad

    async def enter_code(self, code: str) -> KeypadResult:
        """A code typed at the locker (the keypad driver calls this on the agent's loop); opens what it unlocks."""
        return await self.locker.enter_code(code)

    def close(self) -> None:
        """Release the relays and close the stores (after :meth:`run` has returned); again, does nothing."""
        if self._closed:
            return
        self._closed = True
        self.hardware.close()
        self.outbox.close()
        self.journal.close()
        self.ledger_store.close()

    async def _telemetry_loop(self) -> None:
        interval = self.settings.telemetry_interval_s
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            if not self.telemetry_paused:
                self._emit(Channel.TELEMETRY, self.sample())
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - loop.time()))

    async def _prune_loop(self) -> None:
        while True:
            self.journal.prune(timedelta(seconds=self.settings.command_retention_s))
            await asyncio.sleep(PRUNE_EVERY_S)

    async def _ledger_loop(self) -> None:
        while True:
            self.locker.expire()
            await asyncio.sleep(LEDGER_TICK_S)

    async def _update_loop(self) -> None:
        while True:
            try:
                outcome = await self.updates.run()
            except Exception:
                log.exception(
                    "ota step failed node=%s phase=%s action=it is repeated in %.0f s; if it keeps failing, check the "
                    "disk and the shim's base directory",
                    self.node_id,
                    self.updates.driver.record.phase,
                    OTA_RETRY_S,
                )
                await asyncio.sleep(OTA_RETRY_S)
                continue
            if outcome is RunOutcome.RESTART:
                raise _RestartDueError

    # -- updates (the updater's host) ------------------------------------------------------------------------

    def occupancy(self) -> Occupancy:
        """The locker's use right now, for the update gate."""
        try:
            battery = self.hardware.battery.read()
        except Exception:  # an unreadable gauge defers updates (the gate says so)
            battery = None
        return Occupancy(
            open_doors=self.locker.open_doors(),
            commands_in_flight=self.locker.opens_in_flight,
            ledger=self.locker.ledger,
            battery=battery,
        )

    async def health_problem(self) -> str | None:
        """The trial start's check: a broker round trip, the board self-test, journal, ledger and outbox usable."""
        try:
            await self.link.round_trip()
        except aiomqtt.MqttError as exc:
            return f"broker round trip failed: {exc}"[:240]
        problem = board_self_test(self.hardware) or stores_open(
            lambda: self.journal.lookup("health-check"), self.ledger_store.node_key, self.outbox.__len__
        )
        for check in self._health_checks:
            problem = problem or await check()
        return problem

    def publish_ota(self, report: Progress) -> None:
        """Queue one update progress report on the event channel."""
        self._emit(Channel.EVENT, ota_event(report, **self._envelope()))

    # -- messages --------------------------------------------------------------------------------------------

    def _envelope(self, *, replayed: bool | None = None) -> dict[str, Any]:
        return {
            "node_id": self.node_id,
            "boot_id": self.boot_id,
            "seq": next(self._seq),
            "ts": self._now(),
            "replayed": (not self.link.connected) if replayed is None else replayed,
        }

    def _emit(self, channel: Channel, message: Message) -> None:
        self.outbox.put(
            topic(self.node_id, channel),
            encode(message),
            droppable=channel is Channel.TELEMETRY,
            retain=channel.retained,
            key=(message.boot_id, message.seq) if isinstance(message, NodeEnvelope) else None,
        )
        self.link.notify()

    def _connection_status(self) -> tuple[Publication, Publication]:
        """Birth for this connect and the will that outranks it (next seq), both for the current boot."""
        birth = StatusBirth(
            **self._envelope(replayed=False),
            firmware_version=self.updates.running_version,
            hardware_model=self.hardware.profile.hardware_model,
            telemetry_interval_s=self.settings.telemetry_interval_s,
            compartments=[CompartmentInfo(id=c.id, size=c.size) for c in self.hardware.compartments.values()],
            site=self.settings.site,
        )
        death = StatusDeath(**self._envelope(replayed=False))
        status_topic = topic(self.node_id, Channel.STATUS)
        return Publication(status_topic, encode(birth)), Publication(status_topic, encode(death))

    def sample(self) -> Telemetry:
        """Read every sensor into one telemetry message."""
        reading = self.hardware.battery.read()
        self._dropped_total += self.outbox.take_dropped()
        if unconfirmed := self.outbox.take_unconfirmed_evicted():
            log.warning(
                "outbox full: messages the broker took but the controller never confirmed storing were evicted "
                "node=%s count=%d action=check that the controller runs and sends receipts (--stored-receipt-s) and "
                "the broker lets it publish lockers/v1/+/stored; a broker crash may have lost these",
                self.node_id,
                unconfirmed,
            )
        return Telemetry(
            **self._envelope(),
            battery=Battery(
                soc_pct=reading.soc_pct,
                voltage_v=reading.voltage_v,
                charging=reading.charging,
                power_source=reading.power_source,
                cycle_count=reading.cycle_count,
            ),
            enclosure_temp_c=self.hardware.temperature.read_c(),
            compartments=[
                CompartmentReading(
                    id=c.id,
                    door=DoorState.OPEN if c.door_is_open() else DoorState.CLOSED,
                    lock=LockState.UNLOCKED if c.relay_is_on() else LockState.LOCKED,
                )
                for c in self.hardware.compartments.values()
            ],
            outbox_dropped=self._dropped_total,
        )

    def _door_changed(self, compartment: str, is_open: bool) -> None:
        cause = self.locker.door_moved(compartment, is_open)
        event = DoorEvent(
            **self._envelope(), compartment=compartment, action="opened" if is_open else "closed", cause=cause
        )
        if event.uncommanded_open:
            log.warning(
                "uncommanded door open node=%s compartment=%s action=treat as a security event: check the site",
                self.node_id,
                compartment,
            )
        self._emit(Channel.EVENT, event)


async def run_restarting(build: Callable[[], Agent], started: Callable[[Agent], None] | None = None) -> RunOutcome:
    """Run the agent ``build`` makes (``started`` sees each one); when an update needs a restart, close it and call
    its shim's ``restart``. The ``sim`` shim restarts in-process: the next agent comes from ``build``. Any other shim
    returns :attr:`RunOutcome.RESTART`: the process exits and systemd (venv-slots) or the reboot (tryboot) starts the
    new slot. When cancelled, the running agent is left for the caller to close."""
    while True:
        agent = build()
        if started is not None:
            started(agent)
        outcome = await agent.run()
        agent.close()
        shim = agent.updates.shim
        shim.restart()
        if shim.name != "sim":
            return outcome
        log.info("agent restarting in-process node=%s version=%s", agent.node_id, shim.current())
