"""The compartments of one locker and who may open them: the reservation ledger, the code keypad and the doors.

Every opening, by command or by code, drives its door through :meth:`Locker.open`; ledger changes are kept durably
and reported as events. Commands reach this through :mod:`node_agent.commands`, typed codes through
:meth:`Locker.enter_code`.
"""

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

from node_agent.door import open_compartment
from node_agent.hardware import Hardware
from node_agent.keypad import Keypad, KeypadRefusal, KeypadResult, grants
from node_agent.ledger import Decision, Ledger, SlotState, Window
from node_agent.ledger_store import LedgerStore
from schemas import (
    CancelCommand,
    Cause,
    Channel,
    CodeCause,
    CommandCause,
    DoorOutcome,
    DoorResult,
    KeypadEvent,
    LedgerEvent,
    NoCause,
    ReservationStep,
    ReserveCommand,
)
from schemas.codec import Message

log = logging.getLogger(__name__)

Envelope = Callable[[], dict[str, Any]]
"""Envelope fields (node, boot id, next seq, time, replayed) for the next message."""

Emit = Callable[[Channel, Message], None]
"""Queue a message for publication on one of this node's channels."""


class Locker:
    """Compartment state of one node: what may open now, the doors being opened, and the ledger they change."""

    def __init__(
        self,
        node_id: str,
        hardware: Hardware,
        store: LedgerStore,
        *,
        now: Callable[[], datetime],
        envelope: Envelope,
        emit: Emit,
    ) -> None:
        self.node_id = node_id
        self.hardware = hardware
        self._store = store
        self._now = now
        self._envelope = envelope
        self._emit = emit
        self.ledger: Ledger = store.load(list(hardware.compartments))
        key = store.node_key()
        self.keypad = self._new_keypad(key) if key else None
        self._opening: dict[str, tuple[Cause, asyncio.Event]] = {}
        self._busy: dict[str, asyncio.Lock] = {c: asyncio.Lock() for c in hardware.compartments}

    # -- doors -----------------------------------------------------------------------------------------------

    @property
    def opens_in_flight(self) -> int:
        """Compartments being opened (or waiting to be) right now, by command or by code."""
        return sum(1 for lock in self._busy.values() if lock.locked())

    def open_doors(self) -> frozenset[str]:
        """The compartments whose door switch reads open."""
        return frozenset(c.id for c in self.hardware.compartments.values() if c.door_is_open())

    def door_moved(self, compartment: str, is_open: bool) -> Cause:
        """What caused this door edge: the command or code opening it right now, else nothing."""
        opening = self._opening.get(compartment)
        if is_open and opening is not None:
            opening[1].set()
            return opening[0]
        return NoCause()

    def open_refusal(self, compartment: str, reservation_id: str | None, step: ReservationStep | None) -> str | None:
        """Why the ledger forbids this open (a reservation's step, or a service open without), or None."""
        slot = self.ledger.slots.get(compartment)
        if slot is None:
            return f"no compartment {compartment!r}; known: {', '.join(self.hardware.compartments)}"
        if reservation_id is None or step is None:
            if slot.state in (SlotState.HELD, SlotState.OCCUPIED):
                return f"{compartment} is {slot.state.value} for a reservation: open it with the reservation"
            return None
        if slot.reservation_id != reservation_id:
            return f"reservation {reservation_id} does not hold {compartment}"
        decision = self._step(reservation_id, step)
        return None if decision.accepted else f"{decision.refused}: {decision.detail}"

    async def open(self, compartment_id: str, cause: Cause) -> DoorOutcome:
        """Pulse the relay of a compartment (one opening at a time per compartment) and report what the door did."""
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

    def opened_for(
        self, reservation_id: str, step: ReservationStep, outcome: DoorOutcome, cause: CommandCause | CodeCause
    ) -> None:
        """After an opening for a reservation's step: unless the door jammed, the step is done."""
        if outcome.result is DoorResult.JAMMED:
            return
        if isinstance(cause, CommandCause):
            self._apply(self._step(reservation_id, step), "command", cause.command_id)
        else:
            self._apply(self._step(reservation_id, step), "code")

    # -- ledger ----------------------------------------------------------------------------------------------

    def reserve(self, command: ReserveCommand) -> Decision:
        """Hold a compartment for a reservation; an accepted change is kept and reported."""
        window = Window(command.opens_at, command.hold_until, command.pickup_until)
        decision = self.ledger.reserve(command.reservation_id, command.compartment, window, self._now())
        return self._keep(decision, command.command_id)

    def cancel(self, command: CancelCommand) -> Decision:
        """Release a reservation's hold; an accepted change is kept and reported."""
        return self._keep(self.ledger.cancel(command.reservation_id), command.command_id)

    def expire(self) -> None:
        """Free the holds past their deadline."""
        self._apply(self.ledger.expire(self._now()), "timer")

    def _keep(self, decision: Decision, command_id: str) -> Decision:
        if decision.accepted:
            self._apply(decision, "command", command_id)
        return decision

    def _step(self, reservation_id: str, step: ReservationStep) -> Decision:
        """The ledger change ``step`` of ``reservation_id`` means now (refused when its compartment is not ready)."""
        if step is ReservationStep.DEPOSIT:
            return self.ledger.deposit(reservation_id, self._now())
        return self.ledger.pickup(reservation_id)

    def _apply(
        self, decision: Decision, via: Literal["command", "code", "timer"], command_id: str | None = None
    ) -> None:
        """Keep an accepted decision (durably) and report each change."""
        if not decision.changes:
            return
        self.ledger = decision.ledger
        self._store.save(self.ledger)
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

    def provision_key(self, key: bytes) -> None:
        """Store the node's code key (replacing any earlier one); codes derived from it open from now on."""
        self._store.set_node_key(key)
        self.keypad = self._new_keypad(key)

    def _new_keypad(self, key: bytes) -> Keypad:
        keypad = Keypad(key, self.node_id)
        keypad.restore(self._store.load_keypad())
        return keypad

    async def enter_code(self, code: str) -> KeypadResult:
        """A code typed at the locker; opens what it unlocks."""
        if self.keypad is None:
            log.warning("code typed but no code key provisioned node=%s action=send provision_key", self.node_id)
            return KeypadResult(None, KeypadRefusal.WRONG)
        result = self.keypad.enter(code, grants(self.ledger), self._now())
        self._store.save_keypad(self.keypad.snapshot())
        if result.locked_now and result.locked_until is not None:
            log.warning(
                "keypad scope locked node=%s scope=%s until=%s wrong_attempts=%d action=wrong codes starting with "
                "%s: check the site for tampering if it repeats",
                self.node_id,
                result.scope,
                result.locked_until.isoformat(),
                result.wrong_attempts,
                result.scope,
            )
            self._emit(
                Channel.EVENT,
                KeypadEvent(
                    **self._envelope(),
                    locked_until=result.locked_until,
                    wrong_attempts=result.wrong_attempts,
                    scope=result.scope,
                ),
            )
        grant = result.grant
        if grant is None:
            return result
        step = ReservationStep(grant.purpose.value)
        if not self._step(grant.reservation_id, step).accepted:
            return KeypadResult(None, KeypadRefusal.WRONG)
        cause = CodeCause(code_ref=grant.reservation_id)
        self.opened_for(grant.reservation_id, step, await self.open(grant.compartment, cause), cause)
        return result
