"""Commands executed exactly once: decode, answer redeliveries from the journal, refuse the untrusted and the expired,
dispatch by type.

Trust does not rest on the broker's ACL alone (:mod:`schemas.command_trust`): a command living longer than its type
allows, issued in this node's future, or of a signed type without the pinned controller key's signature is answered
``rejected`` and kept among the refused payloads, never journaled under its id (a forged command cannot take the id
of a real one).

A command that acts on hardware (open) is journaled before it acts and answered ``accepted`` then with its final
result; one that only decides (reserve, cancel, provision_key) is journaled together with its one answer. An update is
handed to the updater (:mod:`node_agent.updates`) and answered ``done``; how it goes is told by ``ota`` events (a
refused release included). A command
still unfinished when the agent stopped is answered ``unknown`` at the next start (:meth:`CommandExecutor.recover`).
"""

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, assert_never

from node_agent.controller_key import ControllerKey
from node_agent.journal import Journal, JournalEntry
from node_agent.ledger import Decision
from node_agent.locker import Emit, Envelope, Locker
from schemas import (
    CancelCommand,
    CancelUpdateCommand,
    Channel,
    Command,
    CommandCause,
    CommandResult,
    CommandStatus,
    OpenCommand,
    PayloadError,
    ProvisionKeyCommand,
    RejectReason,
    ReserveCommand,
    UpdateCommand,
    decode,
    encode,
)
from schemas.command_trust import CommandRefused, check_lifetime, verify_command
from schemas.release import key_id_for

log = logging.getLogger(__name__)


class CommandExecutor:
    """Executes this node's commands against its locker, keeping each one's answer in the journal."""

    def __init__(
        self,
        node_id: str,
        journal: Journal,
        locker: Locker,
        controller_key: ControllerKey,
        *,
        now: Callable[[], datetime],
        envelope: Envelope,
        emit: Emit,
        update: Callable[[UpdateCommand], None],
        cancel_update: Callable[[str], None],
    ) -> None:
        self.node_id = node_id
        self.journal = journal
        self.locker = locker
        self.controller_key = controller_key
        self._now = now
        self._envelope = envelope
        self._emit = emit
        self._update = update
        self._cancel_update = cancel_update
        self._tasks: set[asyncio.Task[None]] = set()

    def recover(self) -> None:
        """Answer ``unknown`` for every command the last run began and never finished (they are not retried)."""
        for entry in self.journal.unfinished():
            result = self._result(
                entry.command_id,
                CommandStatus.UNKNOWN,
                detail="the agent stopped while executing this command; it is not retried: check the door",
            )
            self.journal.finish(entry.command_id, encode(result))
            log.warning(
                "command outcome unknown after restart node=%s command_id=%s action=check the compartment on site",
                self.node_id,
                entry.command_id,
            )
            self._emit(Channel.RESULT, result)

    def received(self, topic_name: str, payload: bytes) -> None:
        """Start executing a command delivered on ``topic_name`` (called on the agent's loop)."""
        task = asyncio.get_running_loop().create_task(self.execute(topic_name, payload))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def cancel_in_flight(self) -> None:
        """Stop the commands still executing; with no final result journaled, the next start reports them unknown."""
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)

    async def execute(self, topic_name: str, payload: bytes) -> None:
        """Decode, deduplicate and check expiry, then carry out the command by its type and publish its result."""
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
        payload = _as_journaled(command, payload)
        # No await between lookup and begin: a redelivery handled concurrently sees the journal entry.
        entry = self.journal.lookup(command.command_id)
        if entry is not None:
            self._emit(Channel.RESULT, self._duplicate(command.command_id, entry))
            return
        try:
            self._check_trust(command)
        except CommandRefused as exc:
            self._refuse_untrusted(topic_name, command, payload, exc.detail)
            return
        if self._now() >= command.expires_at:
            self._answer(
                command,
                payload,
                CommandStatus.EXPIRED,
                f"arrived after expires_at {command.expires_at.isoformat()}",
            )
            return
        await self._dispatch(command, payload)

    def _check_trust(self, command: Command) -> None:
        """Lifetime and clock first, then the signature of a signed type; pins the controller key on first use."""
        check_lifetime(command, self._now())
        if not command.SIGNED:
            return
        signer = verify_command(command, self.controller_key.pinned)
        if self.controller_key.pinned is None:
            self.controller_key.pin(signer)

    def _refuse_untrusted(self, topic_name: str, command: Command, payload: bytes, detail: str) -> None:
        """Answer ``rejected`` and keep the payload among the refused (not under its command id)."""
        self.journal.keep_rejected(topic_name, payload, "untrusted", detail)
        pinned = self.controller_key.pinned
        log.warning(
            "command refused untrusted node=%s command_id=%s type=%s detail=%s pinned_key=%s action=%s",
            self.node_id,
            command.command_id,
            command.type,
            detail,
            key_id_for(pinned) if pinned is not None else "none",
            "if the controller sent it, check its clock and command-signing key against this node's pinned key; "
            "else someone publishes on this node's command topic: check the broker's logins and ACL",
        )
        self._emit(Channel.RESULT, self._result(command.command_id, CommandStatus.REJECTED, detail=detail[:256]))

    async def _dispatch(self, command: Command, payload: bytes) -> None:
        """One handler per command type; a new type in the contract fails type checking here until it has one."""
        match command:
            case OpenCommand():
                await self._open(command, payload)
            case ReserveCommand():
                self._answer_decision(command, payload, self.locker.reserve(command))
            case CancelCommand():
                self._answer_decision(command, payload, self.locker.cancel(command))
            case ProvisionKeyCommand():
                self.locker.provision_key(bytes.fromhex(command.key_hex))
                self._answer(command, payload, CommandStatus.DONE, "code key stored")
            case UpdateCommand():
                # Handed over before it is journaled: a crash in between is a redelivery the updater knows by id.
                self._update(command)
                self._answer(command, payload, CommandStatus.DONE, "handed to the updater; ota events follow")
            case CancelUpdateCommand():
                self._cancel_update(command.update_command_id)
                self._answer(command, payload, CommandStatus.DONE, "cancel handed to the updater; an ota event follows")
            case _:
                assert_never(command)

    async def _open(self, command: OpenCommand, payload: bytes) -> None:
        refusal = self.locker.open_refusal(command.compartment, command.reservation_id, command.step)
        if refusal is not None:
            self._answer(command, payload, CommandStatus.REJECTED, refusal)
            return
        self.journal.begin(command.command_id, command.expires_at, payload)
        self._emit(Channel.RESULT, self._result(command.command_id, CommandStatus.ACCEPTED))
        cause = CommandCause(command_id=command.command_id)
        try:
            outcome = await self.locker.open(command.compartment, cause)
        except Exception as exc:
            log.exception(
                "open failed node=%s command_id=%s action=inspect the relay wiring", self.node_id, command.command_id
            )
            result = self._result(command.command_id, CommandStatus.FAILED, detail=f"hardware error: {exc}"[:256])
        else:
            if command.reservation_id is not None and command.step is not None:
                self.locker.opened_for(command.reservation_id, command.step, outcome, cause)
            result = self._result(command.command_id, CommandStatus.DONE, outcome=outcome)
        self.journal.finish(command.command_id, encode(result))
        self._emit(Channel.RESULT, result)

    def _answer_decision(self, command: ReserveCommand | CancelCommand, payload: bytes, decision: Decision) -> None:
        if not decision.accepted:
            self._answer(command, payload, CommandStatus.REJECTED, f"{decision.refused}: {decision.detail}")
            return
        self._answer(command, payload, CommandStatus.DONE, "" if decision.changes else "already done")

    def _answer(self, command: Command, payload: bytes, status: CommandStatus, detail: str) -> None:
        """Journal a command together with its one and final answer (nothing was begun), and publish the answer."""
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

    def _result(self, command_id: str, status: CommandStatus, **fields: Any) -> CommandResult:
        return CommandResult(**self._envelope(), command_id=command_id, status=status, **fields)

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


def _as_journaled(command: Command, payload: bytes) -> bytes:
    """What the journal keeps of a command: a ``provision_key`` without its key (the ledger store keeps that)."""
    if isinstance(command, ProvisionKeyCommand):
        return encode(command.model_copy(update={"key_hex": "redacted"}))
    return payload
