"""Courier opens waiting for their node's answer: command ids mapped to futures on the HTTP event loop."""

import asyncio
import threading

from schemas import CommandResult, CommandStatus

FINAL_STATUSES = frozenset(CommandStatus) - {CommandStatus.ACCEPTED}
"""Statuses that end a command; ``accepted`` only says execution started."""


class PendingOpens:
    """Futures keyed by command id; results arrive on the MQTT thread, waiters live on the event loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[str, asyncio.Future[CommandResult]] = {}

    def expect(self, command_id: str) -> "asyncio.Future[CommandResult]":
        """A future on the running loop, resolved with the final result of ``command_id``."""
        future: asyncio.Future[CommandResult] = asyncio.get_running_loop().create_future()
        with self._lock:
            self._waiting[command_id] = future
        return future

    def forget(self, command_id: str) -> None:
        """Stop waiting (the courier got a timeout); a late result is then only stored."""
        with self._lock:
            self._waiting.pop(command_id, None)

    def resolve(self, result: CommandResult) -> None:
        """Hand a final result to its waiter, if any; safe to call from any thread."""
        if result.status not in FINAL_STATUSES:
            return
        with self._lock:
            future = self._waiting.pop(result.command_id, None)
        if future is not None:
            future.get_loop().call_soon_threadsafe(_settle, future, result)

    def __len__(self) -> int:
        with self._lock:
            return len(self._waiting)


def _settle(future: "asyncio.Future[CommandResult]", result: CommandResult) -> None:
    if not future.done():
        future.set_result(result)
