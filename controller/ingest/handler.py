"""Ingest: what happens to one delivered MQTT message, from bytes to the lines that store it.

Validation with the contract, fleet updates, deduplication, line protocol, dead letters. No network I/O: the
MQTT adapter calls :meth:`Ingest.handle` and hands the returned lines to the write pipeline, which acknowledges
the message once they are stored.
"""

import logging
import threading
import time
from collections.abc import Callable
from typing import Final, NamedTuple

from controller.fleet.registry import Fleet
from controller.influx.lineproto import (
    dead_letter_line,
    event_line,
    keypad_line,
    ledger_line,
    ota_line,
    result_line,
    telemetry_line,
)
from controller.ingest.dedup import MessageKey
from controller.log_throttle import Throttle
from controller.metrics import Metrics
from controller.store.fleet import FleetStore
from schemas import (
    Channel,
    CommandResult,
    Direction,
    DoorEvent,
    KeypadEvent,
    LedgerEvent,
    OtaEvent,
    PayloadError,
    RejectReason,
    StatusBirth,
    StatusDeath,
)
from schemas.frames import TelemetryFrame
from schemas.ingest_codec import Ingested, decode_ingested

log = logging.getLogger(__name__)

NO_LINES: Final[list[str]] = []

HANDLER_ERROR: Final = "handler_error"
"""Dead-letter reason of a valid message the controller failed to handle, again and again (a bug to report)."""

NodeMessage = TelemetryFrame | DoorEvent | LedgerEvent | KeypadEvent | OtaEvent | CommandResult
"""What a node sends besides its status: deduplicated, stored, routed."""
_STATUSES: Final = (StatusBirth, StatusDeath)


class Handled(NamedTuple):
    """Lines that store a message, and its key to remember once they are stored (None: nothing to remember).

    A named tuple: one is built per message, and a frozen dataclass's ``__init__`` costs several times more.
    """

    lines: list[str]
    key: MessageKey | None = None


class Ingest:
    """Turns delivered messages into lines; called from one thread (the MQTT network loop)."""

    def __init__(
        self,
        fleet: Fleet,
        store: FleetStore,
        metrics: Metrics,
        *,
        already_stored: Callable[[MessageKey], bool],
        on_result: Callable[[CommandResult], None],
        on_ledger: Callable[[LedgerEvent], None] = lambda _e: None,
        on_ota: Callable[[OtaEvent], None] = lambda _e: None,
        on_birth: Callable[[StatusBirth], None] = lambda _b: None,
        observe: Callable[[Ingested, float], None] = lambda _m, _t: None,
        clock: Callable[[], float] = time.time,
        dead_letter_max_bytes: int = 4096,
    ) -> None:
        self.fleet = fleet
        self._store = store
        self._metrics = metrics
        self._already_stored = already_stored
        self._on_result = on_result
        self._on_ledger = on_ledger
        self._on_ota = on_ota
        self._on_birth = on_birth
        self._observe = observe
        self._clock = clock
        self._dead_letter_max_bytes = dead_letter_max_bytes
        self._throttle = Throttle(60.0)
        self._last_dead_ns = 0
        self._dead_lock = threading.Lock()  # dead letters come from both MQTT sessions' threads
        upward = [c.value for c in Channel if c.direction is Direction.UP]
        metrics.ingested.declare(upward)
        metrics.duplicates.declare(upward)
        self._ingested = metrics.ingested.for_thread
        self._duplicates = metrics.duplicates.for_thread

    def handle(self, topic: str, payload: bytes) -> Handled:
        """Validate and route one message; never raises for bad input (it becomes a dead letter)."""
        now = self._clock()
        try:
            where, message = decode_ingested(topic, payload)
        except PayloadError as exc:
            return Handled([self._dead_letter(exc.reason.value, exc.detail, topic, payload, now)])
        channel = where.channel
        if isinstance(message, NodeMessage):  # first: telemetry is the bulk, and matches the union's first member
            return self._node_message(channel, message, now)
        if isinstance(message, _STATUSES):
            record = self.fleet.apply_status(message, now)
            if record is not None:
                self._store.save(record)
                self._observe(message, now)
                if isinstance(message, StatusBirth):
                    self._on_birth(message)
            counts = self._ingested()
            counts[channel] = counts.get(channel, 0) + 1
            return Handled(NO_LINES)
        # A command echoed on a node channel: not ours to store.
        error = _wrong_channel(topic)
        return Handled([self._dead_letter(error.reason.value, error.detail, topic, payload, now)])

    def _node_message(self, channel: Channel, message: NodeMessage, now: float) -> Handled:
        key = MessageKey(message.node_id, message.boot_id, message.seq)
        if self._already_stored(key):
            counts = self._duplicates()
            counts[channel] = counts.get(channel, 0) + 1
            return Handled(NO_LINES, key)  # the key again: the node gets a receipt for its re-send
        self._observe(message, now)
        if isinstance(message, TelemetryFrame):
            self.fleet.seen(message.node_id, now, message)
            counts = self._ingested()
            counts[channel] = counts.get(channel, 0) + 1
            return Handled([telemetry_line(message)], key)
        self.fleet.seen(message.node_id, now)
        line = self._route(message)
        counts = self._ingested()  # once routed: a retry after the store failed is not another message
        counts[channel] = counts.get(channel, 0) + 1
        return Handled([line], key)

    def _route(self, message: DoorEvent | LedgerEvent | KeypadEvent | OtaEvent | CommandResult) -> str:
        """The line storing ``message``, after handing it to whoever acts on it."""
        if isinstance(message, DoorEvent):
            return event_line(message)
        if isinstance(message, LedgerEvent):
            self._on_ledger(message)
            return ledger_line(message)
        if isinstance(message, KeypadEvent):
            return keypad_line(message)
        if isinstance(message, OtaEvent):
            self._on_ota(message)
            return ota_line(message)
        self._on_result(message)
        return result_line(message)

    def failed(self, topic: str, payload: bytes, error: Exception) -> Handled:
        """The dead letter of a message whose handling kept failing with ``error`` (a bug: its bytes are kept)."""
        line = self._dead_letter(HANDLER_ERROR, repr(error)[:500], topic, payload, self._clock())
        try:  # kept as a dead letter, it is done with: its key gets a delivery receipt
            _, message = decode_ingested(topic, payload)
        except Exception:  # what failed may have been the decoding itself
            return Handled([line])
        key = MessageKey(message.node_id, message.boot_id, message.seq) if isinstance(message, NodeMessage) else None
        return Handled([line], key)

    def _dead_letter(self, reason: str, detail: str, topic: str, payload: bytes, now: float) -> str:
        self._metrics.rejected.labels(reason).inc()
        with self._dead_lock:
            held = self._throttle.allow(reason, now)
            when_ns = max(int(now * 1e9), self._last_dead_ns + 1)  # unique: dead letters never overwrite each other
            self._last_dead_ns = when_ns
        if held is not None:
            log.warning(
                "message refused reason=%s topic=%s size=%d detail=%s held_back=%d "
                "action=see measurement dead_letter (raw bytes kept) and fix the publisher; "
                "logged at most once a minute per reason",
                reason,
                topic,
                len(payload),
                detail,
                held,
            )
        return dead_letter_line(reason, topic, payload, detail, when_ns, self._dead_letter_max_bytes)


def _wrong_channel(topic: str) -> PayloadError:
    return PayloadError(RejectReason.UNKNOWN_TOPIC, f"{topic} is a controller-to-node channel")
