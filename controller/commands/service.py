"""The one owner of downlink commands: builds every command, publishes it, waits for and correlates its results.

Every command the controller sends is built here (ids included) and published here. Results come back on the
ingest thread through :meth:`Commands.on_result` and are routed by command id alone: to a coroutine waiting in
:meth:`Commands.request` (an HTTP open), and to the handler registered when the command was sent (a reservation
following its ``reserve``). Handlers can be registered again after a restart with :meth:`Commands.track`.
"""

import asyncio
import logging
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from controller.commands.signing import public_key_line
from schemas import (
    CancelCommand,
    CancelUpdateCommand,
    Channel,
    Command,
    CommandResult,
    CommandStatus,
    OpenCommand,
    ProvisionKeyCommand,
    ReservationStep,
    ReserveCommand,
    SignedRelease,
    UpdateCommand,
    encode,
    topic,
)
from schemas.command_trust import sign_command
from schemas.release import key_id_for

log = logging.getLogger(__name__)

FINAL_STATUSES = frozenset(CommandStatus) - {CommandStatus.ACCEPTED}
"""Statuses that end a command; ``accepted`` only says execution started."""

ResultHandler = Callable[[CommandResult], None]

_IDS = uuid.UUID("5f8d3c2e-7a41-4b0e-9c55-2f1d6a8e4b10")
"""Namespace of the deterministic command ids (a re-sent reserve must carry the id of the first)."""


class CommandNotSentError(ConnectionError):
    """The command surely never left the controller (an open answers 503); it will not run."""


class Publisher(Protocol):
    """Where commands go: the MQTT command publisher (:class:`controller.mqtt.publisher.CommandLink`)."""

    def publish(self, topic: str, payload: bytes, expiry_s: float) -> None:
        """Publish at QoS 1; the broker drops it once ``expiry_s`` passed undelivered.

        Returning means sent or queued to be sent on reconnect; :class:`CommandNotSentError` means surely not sent.
        """


class Commands:
    """Builds, publishes and follows commands; thread-safe (HTTP workers, the event loop, the ingest thread)."""

    def __init__(
        self, publisher: Publisher, clock: Callable[[], float], signer: Ed25519PrivateKey | None = None
    ) -> None:
        """``signer`` is the command-signing key (:mod:`controller.commands.signing`); without it no provision_key."""
        self._publisher = publisher
        self._clock = clock
        self._signer = signer
        if signer is not None:
            log.info(
                "command signing key key_id=%s public_key=%s action=lockers pin this key: write this public_key line "
                "to the file given as --controller-key-file (else a locker trusts the first key it sees)",
                key_id_for(signer.public_key().public_bytes_raw()),
                public_key_line(signer),
            )
        self._lock = threading.Lock()
        self._handlers: dict[str, tuple[ResultHandler, float]] = {}
        """Command id → (handler of its results, when to forget it)."""
        self._waiting: dict[str, asyncio.Future[CommandResult]] = {}

    def open(
        self,
        node_id: str,
        compartment: str,
        timeout_s: float,
        reservation: tuple[str, ReservationStep] | None = None,
    ) -> OpenCommand:
        """An open valid for ``timeout_s`` from now (with ``reservation``: that reservation's deposit or pickup)."""
        issued = self._now()
        reservation_id, step = reservation if reservation is not None else (None, None)
        return OpenCommand(
            command_id=uuid.uuid4().hex,
            node_id=node_id,
            issued_at=issued,
            expires_at=issued + timedelta(seconds=timeout_s),
            compartment=compartment,
            reservation_id=reservation_id,
            step=step,
        )

    def reserve(
        self,
        reservation_id: str,
        node_id: str,
        compartment: str,
        opens_at: datetime,
        hold_until: datetime,
        pickup_until: datetime,
        ttl: timedelta,
    ) -> ReserveCommand:
        """The hold of a compartment for a reservation; every (re)send of it carries the same command id."""
        issued = self._now()
        return ReserveCommand(
            command_id=reserve_command_id(reservation_id),
            node_id=node_id,
            issued_at=issued,
            expires_at=issued + ttl,
            reservation_id=reservation_id,
            compartment=compartment,
            opens_at=opens_at,
            hold_until=hold_until,
            pickup_until=pickup_until,
        )

    def cancel(self, reservation_id: str, node_id: str, ttl: timedelta) -> CancelCommand:
        """Release a reservation's hold at its node."""
        issued = self._now()
        return CancelCommand(
            command_id=uuid.uuid4().hex,
            node_id=node_id,
            issued_at=issued,
            expires_at=issued + ttl,
            reservation_id=reservation_id,
        )

    def provision_key(self, node_id: str, boot_id: int, seq: int, key_hex: str) -> ProvisionKeyCommand:
        """The node's code key, signed, in answer to its birth ``(boot_id, seq)`` (same id from every controller)."""
        if self._signer is None:
            raise RuntimeError("no command-signing key: nodes refuse an unsigned provision_key")
        issued = self._now()
        command = ProvisionKeyCommand(
            command_id=uuid.uuid5(_IDS, f"provision/{node_id}/{boot_id}/{seq}").hex,
            node_id=node_id,
            issued_at=issued,
            expires_at=issued + timedelta(hours=1),
            key_hex=key_hex,
        )
        return sign_command(command, self._signer)

    def update(
        self,
        node_id: str,
        rollout_id: str,
        ttl: timedelta,
        release: SignedRelease | None = None,
        artifact_urls: tuple[str, ...] = (),
    ) -> UpdateCommand:
        """Install ``release`` from ``artifact_urls``, or without a release go back to the previous slot (rollback).

        Every command has a new id: a retry is a new attempt, and the rollout tells its reports apart by id. Signed,
        like ``provision_key``: nodes refuse an unsigned update.
        """
        if self._signer is None:
            raise RuntimeError("no command-signing key: nodes refuse an unsigned update")
        issued = self._now()
        command = UpdateCommand(
            command_id=uuid.uuid4().hex,
            node_id=node_id,
            issued_at=issued,
            expires_at=issued + ttl,
            rollout_id=rollout_id,
            release=release,
            artifact_urls=artifact_urls,
            rollback=release is None,
        )
        return sign_command(command, self._signer)

    def cancel_update(self, node_id: str, rollout_id: str, update_command_id: str) -> CancelUpdateCommand:
        """Withdraw ``update_command_id`` at its node (it stops unless it already switched slots). Signed."""
        if self._signer is None:
            raise RuntimeError("no command-signing key: nodes refuse an unsigned cancel of an update")
        issued = self._now()
        command = CancelUpdateCommand(
            command_id=uuid.uuid4().hex,
            node_id=node_id,
            issued_at=issued,
            expires_at=issued + timedelta(hours=1),
            rollout_id=rollout_id,
            update_command_id=update_command_id,
        )
        return sign_command(command, self._signer)

    def send(self, command: Command, on_result: ResultHandler | None = None) -> None:
        """Publish ``command``; its results go to ``on_result`` until a final one or until it expires.

        Raises :class:`CommandNotSentError` (and follows nothing) when the command surely was not sent.
        """
        if on_result is not None:
            self.track(command.command_id, on_result, command.expires_at)
        ttl = (command.expires_at - command.issued_at).total_seconds()
        try:
            self._publisher.publish(topic(command.node_id, Channel.COMMAND), encode(command), ttl)
        except CommandNotSentError:
            with self._lock:
                self._handlers.pop(command.command_id, None)
            raise

    def track(self, command_id: str, on_result: ResultHandler, until: datetime) -> None:
        """Route results of ``command_id`` to ``on_result`` (also for commands sent before a restart)."""
        with self._lock:
            self._handlers[command_id] = (on_result, until.timestamp() + _LATE_RESULT_GRACE_S)
            self._forget_expired()

    async def request(self, command: Command, timeout_s: float) -> CommandResult | None:
        """Publish ``command`` and wait up to ``timeout_s`` for its final result; None if none came."""
        future: asyncio.Future[CommandResult] = asyncio.get_running_loop().create_future()
        with self._lock:
            self._waiting[command.command_id] = future
        try:
            self.send(command)
            return await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            return None
        finally:
            with self._lock:
                self._waiting.pop(command.command_id, None)

    def on_result(self, result: CommandResult) -> None:
        """A node's result arrived (ingest thread): hand it to whoever follows its command id."""
        final = result.status in FINAL_STATUSES
        with self._lock:
            handler = self._handlers.get(result.command_id)
            if handler is not None and final:
                del self._handlers[result.command_id]
            future = self._waiting.pop(result.command_id, None) if final else None
        if future is not None:
            future.get_loop().call_soon_threadsafe(_settle, future, result)
        if handler is not None:
            handler[0](result)

    @property
    def in_flight(self) -> int:
        """Commands whose answer someone still waits for or follows."""
        with self._lock:
            return len(self._waiting) + len(self._handlers)

    def _forget_expired(self) -> None:
        now = self._clock()
        if len(self._handlers) < _PRUNE_ABOVE:
            return
        for command_id in [c for c, (_h, until) in self._handlers.items() if until < now]:
            del self._handlers[command_id]

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)


_LATE_RESULT_GRACE_S = 600.0
"""How long after its expiry a command's result is still routed (a node's buffered answer, replayed late)."""
_PRUNE_ABOVE = 1024


def reserve_command_id(reservation_id: str) -> str:
    """The id of every ``reserve`` command of ``reservation_id``."""
    return uuid.uuid5(_IDS, f"reserve/{reservation_id}").hex


def _settle(future: "asyncio.Future[CommandResult]", result: CommandResult) -> None:
    if not future.done():
        future.set_result(result)
