"""The agent of one locker: publishes birth, telemetry and door events; executes commands exactly once.

Wiring only: the hardware is a :class:`~node_agent.hardware.Hardware`, durability lives in the journal and the
outbox, the MQTT session in :class:`~node_agent.link.Link`, and the door procedure in :mod:`node_agent.door`.
"""

import asyncio
import itertools
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from node_agent.door import open_compartment
from node_agent.hardware import Hardware
from node_agent.journal import Journal, JournalEntry
from node_agent.keypad import Keypad, KeypadRefusal, KeypadResult, grants
from node_agent.ledger import Decision, SlotState, Window
from node_agent.ledger_store import LedgerStore
from node_agent.link import Link, LinkConfig, Publication
from node_agent.outbox import Outbox
from node_agent.settings import AgentSettings
from schemas import (
    Battery,
    CancelCommand,
    Cause,
    Channel,
    CodeCause,
    Command,
    CommandCause,
    CommandResult,
    CommandStatus,
    CompartmentInfo,
    CompartmentReading,
    DoorEvent,
    DoorOutcome,
    DoorResult,
    DoorState,
    KeypadEvent,
    LedgerEvent,
    LockState,
    NoCause,
    OpenCommand,
    PayloadError,
    ProvisionKeyCommand,
    RejectReason,
    ReserveCommand,
    StatusBirth,
    StatusDeath,
    Telemetry,
    UpdateCommand,
    decode,
    encode,
    topic,
)
from schemas.codec import Message

log = logging.getLogger(__name__)

PRUNE_EVERY_S = 3600.0
LEDGER_TICK_S = 1.0
"""How often holds past their deadline are freed."""


def utc_now() -> datetime:
    """The node's wall clock."""
    return datetime.now(UTC)


class Agent:
    """One locker's agent; ``await agent.run()`` until cancelled, then :meth:`close`."""

    def __init__(self, settings: AgentSettings, hardware: Hardware, *, now: Callable[[], datetime] = utc_now) -> None:
        self.settings = settings
        self.node_id = settings.node_id
        self.hardware = hardware
        self._now = now
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.journal = Journal(settings.data_dir / "journal.sqlite3", now)
        self.outbox = Outbox(settings.data_dir / "outbox.sqlite3", settings.outbox_capacity)
        self.ledger_store = LedgerStore(settings.data_dir / "ledger.sqlite3")
        self.ledger = self.ledger_store.load(list(hardware.compartments))
        key = self.ledger_store.node_key()
        self.keypad = self._new_keypad(key) if key else None
        self.boot_id = self.journal.next_boot_id()
        self._seq = itertools.count()
        self._dropped_total = 0
        self._opening: dict[str, tuple[Cause, asyncio.Event]] = {}
        self._busy: dict[str, asyncio.Lock] = {c: asyncio.Lock() for c in hardware.compartments}
        self._tasks: set[asyncio.Task[None]] = set()
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
            on_command=self._command_received,
        )

    # -- running ---------------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Recover from a crash, then serve until cancelled."""
        loop = asyncio.get_running_loop()

        def door_changed(compartment: str, is_open: bool) -> None:  # gpiozero's thread → this loop
            loop.call_soon_threadsafe(self._door_changed, compartment, is_open)

        self.hardware.on_door_change(door_changed)
        self._recover()
        log.info("agent started node=%s boot_id=%d backlog=%d", self.node_id, self.boot_id, len(self.outbox))
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self.link.run())
                group.create_task(self._telemetry_loop())
                group.create_task(self._prune_loop())
                group.create_task(self._ledger_loop())
        finally:
            # Commands in flight stop with the agent, on this loop: their relay is released and, with no final
            # result journaled, the next start reports them unknown.
            for task in self._tasks:
                task.cancel()
            if self._tasks:
                await asyncio.wait(self._tasks)

    def close(self) -> None:
        """Release the relays and close the stores (after :meth:`run` has returned)."""
        self.hardware.close()
        self.outbox.close()
        self.journal.close()
        self.ledger_store.close()

    def _recover(self) -> None:
        for entry in self.journal.unfinished():
            result = CommandResult(
                **self._envelope(),
                command_id=entry.command_id,
                status=CommandStatus.UNKNOWN,
                detail="the agent stopped while executing this command; it is not retried: check the door",
            )
            self.journal.finish(entry.command_id, encode(result))
            log.warning(
                "command outcome unknown after restart node=%s command_id=%s action=check the compartment on site",
                self.node_id,
                entry.command_id,
            )
            self._emit(Channel.RESULT, result)

    async def _telemetry_loop(self) -> None:
        interval = self.settings.telemetry_interval_s
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            self._emit(Channel.TELEMETRY, self.sample())
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - loop.time()))

    async def _prune_loop(self) -> None:
        while True:
            self.journal.prune(timedelta(seconds=self.settings.command_retention_s))
            await asyncio.sleep(PRUNE_EVERY_S)

    async def _ledger_loop(self) -> None:
        while True:
            self._apply_ledger(self.ledger.expire(self._now()), "timer")
            await asyncio.sleep(LEDGER_TICK_S)

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
        )
        self.link.notify()

    def _connection_status(self) -> tuple[Publication, Publication]:
        """Birth for this connect and the will that outranks it (next seq), both for the current boot."""
        birth = StatusBirth(
            **self._envelope(replayed=False),
            firmware_version=self.settings.firmware_version,
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
        opening = self._opening.get(compartment)
        cause: Cause = NoCause()
        if is_open and opening is not None:
            cause = opening[0]
            opening[1].set()
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

    # -- commands --------------------------------------------------------------------------------------------

    def _command_received(self, topic_name: str, payload: bytes) -> None:
        task = asyncio.get_running_loop().create_task(self._handle_command(topic_name, payload))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _result(self, command_id: str, status: CommandStatus, **fields: Any) -> CommandResult:
        return CommandResult(**self._envelope(), command_id=command_id, status=status, **fields)

    async def _handle_command(self, topic_name: str, payload: bytes) -> None:
        try:
            command = decode(Channel.COMMAND, payload)
            if command.node_id != self.node_id:
                raise PayloadError(RejectReason.WRONG_NODE, f"command for {command.node_id!r} reached {self.node_id!r}")
        except PayloadError as exc:
            self.journal.keep_rejected(topic_name, payload, exc.reason.value, exc.detail)
            log.warning(
                "command refused node=%s reason=%s detail=%s action=fix the sender; payload kept in the journal",
                self.node_id,
                exc.reason.value,
                exc.detail,
            )
            return
        # No await between lookup and begin: a redelivery handled concurrently sees the journal entry.
        entry = self.journal.lookup(command.command_id)
        if entry is not None:
            self._emit(Channel.RESULT, self._duplicate(command.command_id, entry))
            return
        if self._now() >= command.expires_at:
            self._answer_without_acting(
                command,
                payload,
                CommandStatus.EXPIRED,
                f"arrived after expires_at {command.expires_at.isoformat()}",
            )
            return
        if isinstance(command, OpenCommand):
            await self._open_command(command, payload)
        elif isinstance(command, UpdateCommand):
            # Until the OTA state machine (node_agent/ota) is wired in, say so rather than drop the command.
            self._answer_without_acting(command, payload, CommandStatus.REJECTED, "this agent does not install updates")
        else:
            self._ledger_command(command, payload)

    async def _open_command(self, command: OpenCommand, payload: bytes) -> None:
        refusal = self._open_refusal(command)
        if refusal is not None:
            self._answer_without_acting(command, payload, CommandStatus.REJECTED, refusal)
            return
        self.journal.begin(command.command_id, command.expires_at, payload)
        self._emit(Channel.RESULT, self._result(command.command_id, CommandStatus.ACCEPTED))
        try:
            outcome = await self._drive_door(command.compartment, CommandCause(command_id=command.command_id))
        except Exception as exc:
            log.exception(
                "open failed node=%s command_id=%s action=inspect the relay wiring", self.node_id, command.command_id
            )
            result = self._result(command.command_id, CommandStatus.FAILED, detail=f"hardware error: {exc}"[:256])
        else:
            if command.reservation_id is not None and outcome.result is not DoorResult.JAMMED:
                self._apply_ledger(self._use(command.reservation_id), "command", command.command_id)
            result = self._result(command.command_id, CommandStatus.DONE, outcome=outcome)
        self.journal.finish(command.command_id, encode(result))
        self._emit(Channel.RESULT, result)

    def _open_refusal(self, command: OpenCommand) -> str | None:
        """Why the ledger forbids this open, or None."""
        slot = self.ledger.slots.get(command.compartment)
        if slot is None:
            return f"no compartment {command.compartment!r}; known: {', '.join(self.hardware.compartments)}"
        if command.reservation_id is None:
            if slot.state in (SlotState.HELD, SlotState.OCCUPIED):
                return f"{command.compartment} is {slot.state.value} for a reservation: open it with the reservation"
            return None
        if slot.reservation_id != command.reservation_id:
            return f"reservation {command.reservation_id} does not hold {command.compartment}"
        decision = self._use(command.reservation_id)
        return None if decision.accepted else f"{decision.refused}: {decision.detail}"

    def _use(self, reservation_id: str) -> Decision:
        """The ledger step an opening for ``reservation_id`` means now: its deposit if held, its pickup if occupied."""
        placed = self.ledger.find(reservation_id)
        if placed is not None and placed[1].state is SlotState.OCCUPIED:
            return self.ledger.pickup(reservation_id)
        return self.ledger.deposit(reservation_id, self._now())

    async def _drive_door(self, compartment_id: str, cause: Cause) -> DoorOutcome:
        compartment = self.hardware.compartments[compartment_id]
        async with self._busy[compartment_id]:
            door_opened = asyncio.Event()
            self._opening[compartment_id] = (cause, door_opened)
            try:
                outcome = await open_compartment(
                    compartment,
                    door_opened,
                    pulse_s=self.hardware.profile.pulse_ms / 1000,
                    timeout_s=self.hardware.profile.door_timeout_ms / 1000,
                )
            finally:
                del self._opening[compartment_id]
        log.info(
            "open done node=%s compartment=%s cause=%s result=%s",
            self.node_id,
            compartment_id,
            cause.type,
            outcome.result.value,
        )
        return outcome

    def _ledger_command(self, command: ReserveCommand | CancelCommand | ProvisionKeyCommand, payload: bytes) -> None:
        if isinstance(command, ProvisionKeyCommand):
            key = bytes.fromhex(command.key_hex)
            self.ledger_store.set_node_key(key)
            self.keypad = self._new_keypad(key)
            self._answer_without_acting(command, payload, CommandStatus.DONE, "code key stored")
            return
        if isinstance(command, ReserveCommand):
            window = Window(command.opens_at, command.hold_until, command.pickup_until)
            decision = self.ledger.reserve(command.reservation_id, command.compartment, window, self._now())
        else:
            decision = self.ledger.cancel(command.reservation_id)
        if not decision.accepted:
            detail = f"{decision.refused}: {decision.detail}"
            self._answer_without_acting(command, payload, CommandStatus.REJECTED, detail)
            return
        self._apply_ledger(decision, "command", command.command_id)
        self._answer_without_acting(command, payload, CommandStatus.DONE, "" if decision.changes else "already done")

    def _apply_ledger(
        self, decision: Decision, via: Literal["command", "code", "timer"], command_id: str | None = None
    ) -> None:
        """Keep an accepted decision (durably) and report each change."""
        if not decision.changes:
            return
        self.ledger = decision.ledger
        self.ledger_store.save(self.ledger)
        for change in decision.changes:
            self._emit(
                Channel.EVENT,
                LedgerEvent(
                    **self._envelope(),
                    compartment=change.compartment,
                    transition=change.transition,
                    reservation_id=change.reservation_id,
                    via=via,
                    command_id=command_id,
                ),
            )

    # -- keypad ----------------------------------------------------------------------------------------------

    def _new_keypad(self, key: bytes) -> Keypad:
        keypad = Keypad(key, self.node_id)
        keypad.restore(self.ledger_store.load_keypad())
        return keypad

    async def enter_code(self, code: str) -> KeypadResult:
        """A code typed at the locker (the keypad driver calls this on the agent's loop); opens what it unlocks."""
        if self.keypad is None:
            log.warning("code typed but no code key provisioned node=%s action=send provision_key", self.node_id)
            return KeypadResult(None, KeypadRefusal.WRONG)
        result = self.keypad.enter(code, grants(self.ledger), self._now())
        self.ledger_store.save_keypad(self.keypad.snapshot())
        if result.locked_now and result.locked_until is not None:
            log.warning(
                "keypad locked node=%s until=%s action=too many wrong codes: check the site for tampering",
                self.node_id,
                result.locked_until.isoformat(),
            )
            self._emit(
                Channel.EVENT,
                KeypadEvent(**self._envelope(), locked_until=result.locked_until, wrong_attempts=self.keypad.max_wrong),
            )
        grant = result.grant
        if grant is None:
            return result
        if not self._use(grant.reservation_id).accepted:
            return KeypadResult(None, KeypadRefusal.WRONG)
        outcome = await self._drive_door(grant.compartment, CodeCause(code_ref=grant.reservation_id))
        if outcome.result is not DoorResult.JAMMED:
            self._apply_ledger(self._use(grant.reservation_id), "code")
        return result

    def _answer_without_acting(self, command: Command, payload: bytes, status: CommandStatus, detail: str) -> None:
        result = self._result(command.command_id, status, detail=detail or None)
        self.journal.record(command.command_id, command.expires_at, payload, encode(result))
        log.info(
            "command %s node=%s command_id=%s detail=%s",
            status.value,
            self.node_id,
            command.command_id,
            detail,
        )
        self._emit(Channel.RESULT, result)

    def _duplicate(self, command_id: str, entry: JournalEntry) -> CommandResult:
        if entry.result is None:
            return self._result(command_id, CommandStatus.DUPLICATE, detail="still executing")
        first = decode(Channel.RESULT, entry.result)
        return self._result(
            command_id,
            CommandStatus.DUPLICATE,
            outcome=first.outcome,
            detail=f"first answered {first.status.value}",
        )
