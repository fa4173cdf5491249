"""The open path, owned in one place: check the node, spend a rate-limit token, send, wait, record, answer.

Both HTTP opens (an operator's direct open and a courier's reservation open) come here. The outcome is a domain
value (:class:`Opened`) or a :class:`OpenRefusedError` whose :class:`Refusal` the API maps to an HTTP status.
"""

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from controller.alerts import BreakerState
from controller.commands.rate_limit import KeyedLimits, TokenBucket
from controller.commands.service import CommandNotSentError, Commands
from controller.fleet.registry import Fleet, NodeState
from controller.influx.lineproto import courier_open_line
from controller.log_throttle import Throttle
from controller.metrics import Metrics
from schemas import CommandResult, CommandStatus, ReservationStep

log = logging.getLogger(__name__)


class Refusal(StrEnum):
    """Why an open did not end with the door driven."""

    UNKNOWN_NODE = "unknown_node"
    UNKNOWN_COMPARTMENT = "unknown_compartment"
    NODE_OFFLINE = "node_offline"
    BROKER_DOWN = "broker_down"
    RATE_LIMITED = "rate_limited"
    REJECTED = "rejected"
    NO_ANSWER = "no_answer"
    EXPIRED = "expired"
    FAILED = "failed"


class OpenRefusedError(Exception):
    """An open that was refused before sending, or that the node did not carry out."""

    def __init__(
        self, refusal: Refusal, detail: str, command_id: str | None = None, retry_after_s: float | None = None
    ) -> None:
        super().__init__(detail)
        self.refusal = refusal
        self.detail = detail
        self.command_id = command_id
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Opened:
    """The node's final answer to an open that it carried out (or had carried out before, for a duplicate)."""

    command_id: str
    node_id: str
    compartment: str
    result: CommandResult
    round_trip_s: float


_REFUSAL_OF_STATUS = {
    CommandStatus.REJECTED: Refusal.REJECTED,
    CommandStatus.EXPIRED: Refusal.EXPIRED,
    CommandStatus.FAILED: Refusal.FAILED,
    CommandStatus.UNKNOWN: Refusal.FAILED,
}


class Opens:
    """Opens compartments on request and reports what the door did.

    ``on_breaker`` hears when the fleet-wide limit refuses opens, and until when (the ``open_breaker_tripped``
    alert); it is called on the caller's thread.
    """

    def __init__(
        self,
        commands: Commands,
        fleet: Fleet,
        metrics: Metrics,
        store_lines: Callable[[list[str]], None],
        *,
        rate_per_min: float,
        burst: int,
        key_rate_per_min: float,
        key_burst: int,
        default_timeout_s: float,
        clock: Callable[[], float],
        broker_up: Callable[[], bool] = lambda: True,
        on_breaker: Callable[[BreakerState], None] = lambda _state: None,
    ) -> None:
        self._commands = commands
        self._fleet = fleet
        self._metrics = metrics
        self._store_lines = store_lines
        self._rate_per_min = rate_per_min
        self._breaker = TokenBucket(rate_per_min / 60, burst, time.monotonic())
        self._key_rate_per_min = key_rate_per_min
        self._per_key = KeyedLimits(key_rate_per_min / 60, key_burst)
        self._throttled_log = Throttle(60.0)
        self._steps: dict[tuple[str, ReservationStep], asyncio.Future[Opened]] = {}
        """Reservation steps opened or opening: every request for one shares the first one's answer."""
        self._default_timeout_s = default_timeout_s
        self._clock = clock
        self._broker_up = broker_up
        self._on_breaker = on_breaker
        self._tripped_until = -math.inf

    async def open(
        self, node_id: str, compartment: str, *, requested_by: str, timeout_s: float | None = None
    ) -> Opened:
        """Unlock ``compartment`` and wait for the door's outcome; raise :class:`OpenRefusedError` otherwise.

        ``requested_by`` (``operator:<name>`` or ``partner:<name>``) is stored with the open for the audit, and
        its own open limit applies before the fleet-wide one.
        """
        return await self._open(node_id, compartment, requested_by, timeout_s, None)

    def step_started(self, reservation_id: str, step: ReservationStep) -> bool:
        """Whether ``step`` of the reservation was opened (or is opening) through this controller."""
        return (reservation_id, step) in self._steps

    async def open_step(
        self,
        node_id: str,
        compartment: str,
        reservation_id: str,
        step: ReservationStep,
        *,
        requested_by: str,
        timeout_s: float | None = None,
    ) -> Opened:
        """Open for one step of a reservation, once: repeated and concurrent requests get the first answer.

        Only an answer that drove the door is kept; after a refusal or a timeout the next request tries again.
        """
        key = (reservation_id, step)
        earlier = self._steps.get(key)
        if earlier is not None:
            return await asyncio.shield(earlier)
        first: asyncio.Future[Opened] = asyncio.get_running_loop().create_future()
        self._steps[key] = first
        try:
            opened = await self._open(node_id, compartment, requested_by, timeout_s, (reservation_id, step))
        except BaseException as exc:
            del self._steps[key]
            first.set_exception(exc)
            first.exception()  # retrieved: waiters re-raise it, nobody else needs to
            raise
        first.set_result(opened)
        if len(self._steps) > _STEPS_KEPT:
            for old in [k for k, f in self._steps.items() if f.done()][: _STEPS_KEPT // 2]:
                del self._steps[old]
        return opened

    async def _open(
        self,
        node_id: str,
        compartment: str,
        requested_by: str,
        timeout_s: float | None,
        reservation: tuple[str, ReservationStep] | None,
    ) -> Opened:
        started = time.perf_counter()
        self._check_node(node_id, compartment)
        self._spend_token(requested_by)
        wait_s = timeout_s or self._default_timeout_s
        command = self._commands.open(node_id, compartment, wait_s, reservation)
        try:
            result = await self._commands.request(command, wait_s)
        except CommandNotSentError as exc:
            raise OpenRefusedError(
                Refusal.BROKER_DOWN,
                f"the open could not be handed to the MQTT broker ({exc}), so it will not run; retry shortly "
                "(operators: see /healthz and the controller's log)",
            ) from exc
        round_trip_s = time.perf_counter() - started
        self._record(command.command_id, node_id, result, round_trip_s, requested_by)
        if result is None:
            raise OpenRefusedError(
                Refusal.NO_ANSWER,
                f"node {node_id!r} did not answer within {wait_s:g} s; the command expires and will not run",
                command.command_id,
            )
        refusal = _REFUSAL_OF_STATUS.get(result.status)
        if refusal is not None:
            raise OpenRefusedError(
                refusal, f"node answered {result.status.value}: {result.detail or 'no detail'}", command.command_id
            )
        return Opened(command.command_id, node_id, compartment, result, round_trip_s)

    def _check_node(self, node_id: str, compartment: str) -> None:
        if not self._broker_up():
            raise OpenRefusedError(
                Refusal.BROKER_DOWN,
                "the controller has lost the MQTT broker, so no command can reach a node now; retry shortly "
                "(operators: see /healthz and the controller's log)",
            )
        record = self._fleet.get(node_id)
        if record is None:
            raise OpenRefusedError(
                Refusal.UNKNOWN_NODE, f"unknown node {node_id!r}: it never sent a birth to this controller"
            )
        known = [c.id for c in record.birth.compartments]
        if compartment not in known:
            raise OpenRefusedError(
                Refusal.UNKNOWN_COMPARTMENT,
                f"node {node_id!r} has no compartment {compartment!r}; it has {', '.join(known)}",
            )
        if record.state(self._clock()) is NodeState.OFFLINE:
            seen = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(record.last_seen))
            raise OpenRefusedError(
                Refusal.NODE_OFFLINE, f"node {node_id!r} is offline since {seen}; try again later or elsewhere"
            )

    def _spend_token(self, requested_by: str) -> None:
        now = time.monotonic()
        wait_s = self._per_key.take(requested_by, now)
        if wait_s > 0:
            self._metrics.opens_limited.labels("key").inc()
            self._metrics.opens_throttled_keys.labels(requested_by).inc()
            held_back = self._throttled_log.allow(requested_by, now)
            if held_back is not None:
                log.warning(
                    "open limit reached requested_by=%s limit_per_min=%g held_back=%d action=if this key is not "
                    "yours to run this fast, revoke it (lockerfleet revoke-key); otherwise raise "
                    "--open-rate-per-key-per-min",
                    requested_by,
                    self._key_rate_per_min,
                    held_back,
                )
            raise OpenRefusedError(
                Refusal.RATE_LIMITED,
                f"open limit of {self._key_rate_per_min:g}/min for {requested_by} reached; retry in {wait_s:.1f} s",
                retry_after_s=wait_s,
            )
        wait_s = self._breaker.take(now)
        if wait_s > 0:
            self._metrics.opens_limited.labels("fleet").inc()
            self._tripped(now)
            raise OpenRefusedError(
                Refusal.RATE_LIMITED,
                f"fleet-wide open limit of {self._rate_per_min:g}/min reached (a safety limit against mass remote "
                f"opening); retry in {wait_s:.1f} s",
                retry_after_s=wait_s,
            )

    def _tripped(self, now: float) -> None:
        """The fleet-wide limit refused an open: tell the alerts until when (the limit full again), at most once a
        second while it keeps refusing."""
        until = self._clock() + self._breaker.full_in(now)
        if until - self._tripped_until >= 1.0:
            self._tripped_until = until
            detail = f"opens refused at the fleet-wide limit of {self._rate_per_min:g}/min"
            self._on_breaker(BreakerState(tripped=True, detail=detail, until=until))

    def _record(
        self, command_id: str, node_id: str, result: CommandResult | None, round_trip_s: float, requested_by: str
    ) -> None:
        """Count the open in metrics and store it, with who asked for it, in measurement ``courier_open``."""
        outcome = open_outcome(result)
        self._metrics.open_rtt.labels(outcome).observe(round_trip_s)
        line = courier_open_line(
            node_id, outcome, round(round_trip_s * 1000, 3), command_id, requested_by, time.time_ns()
        )
        self._store_lines([line])


_STEPS_KEPT = 10_000
"""Answers to reservation steps kept for repeats (the oldest half is dropped past this)."""


def open_outcome(result: CommandResult | None) -> str:
    """Label of an open's outcome: the door's result when it was driven, else the command status or timeout."""
    if result is None:
        return "timeout"
    if result.outcome is not None:
        return result.outcome.result.value
    return result.status.value
