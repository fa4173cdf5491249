"""Courier reservations at the controller: decide under one lock, ask the node, follow what the node says.

A request is decided by the :class:`~controller.reservations.contention.Allocator` against the fleet as it is
now (nodes from their births and telemetry, compartments not held by an active reservation), stored ``pending``
and sent to the node as a ``reserve`` command. The reservation becomes ``held`` only when the node's ledger
reports it; every later change comes from the node too (:mod:`controller.reservations.reconcile`). Idempotency
keys make a retried request answer exactly what the first one did.
"""

import functools
import hashlib
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Container
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import AwareDatetime, BaseModel, Field, field_validator

from controller.commands.service import Commands, reserve_command_id
from controller.fleet.registry import Fleet, NodeState
from controller.influx.lineproto import reservation_line
from controller.metrics import Metrics
from controller.reservations.cancel import (
    CANCEL_REFUSED,
    CANCEL_REQUESTED,
    NOT_DONE,
    NotCancellableError,
    awaited_cancel,
    refused_cancel,
    too_late,
)
from controller.reservations.contention import (
    Allocator,
    Compartment,
    NodeCondition,
    Policy,
    Priority,
    Request,
    Site,
    Verdict,
)
from controller.reservations.limits import Limits, arrival_refusal, priority_refusal, quota_refusal, site_quota
from controller.reservations.reconcile import Report, View, apply
from controller.store.reservations import (
    ACTIVE_STATES,
    CODE_FIELDS,
    ApiKey,
    DoubleBookingError,
    Reservation,
    ReservationState,
    ReservationStore,
    StoredResponse,
)
from schemas import (
    CommandResult,
    CommandStatus,
    CompartmentSize,
    LedgerEvent,
)
from schemas.codes import CodePurpose, node_key, offline_code
from schemas.types import ShortText, SiteId

log = logging.getLogger(__name__)

MAX_ARRIVAL_AHEAD = timedelta(days=90)
"""No request names an arrival further ahead (the hold window, :attr:`Limits.hold_lead_max`, is tighter)."""


class NotAllowedError(Exception):
    """The key may not make this request (the API answers 403 with the message)."""


class ReservationRequest(BaseModel):
    """Body of ``POST /v1/reservations``."""

    model_config = {"extra": "forbid"}

    site: SiteId
    size: CompartmentSize = Field(
        description="Smallest compartment size class the parcel fits in: `S`, `M`, `L` or `XL` (a larger one may be "
        "given)."
    )
    parcel_ref: str = Field(min_length=1, max_length=128, description="The partner's parcel reference.")
    courier: ShortText | None = Field(default=None, description="Who will deposit (for the audit trail).")
    expected_arrival: AwareDatetime = Field(
        description="When the courier expects to deposit: ISO 8601 with a time zone (`2026-06-01T14:30:00+02:00` or "
        "`…Z`; without one, 422), from a day ago to at most the controller's hold window ahead (48 h by default), "
        "since the compartment is held from the request on."
    )
    priority: Priority = Field(
        default=Priority.NORMAL,
        description="0 normal, 1 peak-hour return, 2 perishable; only priorities granted to the key (403 otherwise).",
    )
    wait_s: float | None = Field(
        default=None,
        gt=0,
        le=86_400,
        description="If nothing is free, wait this long on the site's waitlist (first come, first served within a "
        "priority) instead of a 409.",
    )

    @field_validator("expected_arrival")
    @classmethod
    def _arrival_in_range(cls, value: datetime) -> datetime:
        now = datetime.now(UTC)
        if not now - timedelta(days=1) <= value <= now + MAX_ARRIVAL_AHEAD:
            raise ValueError(f"must be between a day ago and {MAX_ARRIVAL_AHEAD.days} days ahead")
        return value


class ReservationView(BaseModel):
    """A reservation as a courier partner sees it."""

    reservation_id: str
    state: ReservationState
    site: str
    node_id: str | None
    compartment: str | None
    size: str
    parcel_ref: str
    hold_until: datetime | None
    pickup_until: datetime | None
    wait_until: datetime | None = Field(default=None, description="While waitlisted: when the request gives up.")
    deposit_code: str | None = Field(default=None, description="Typed at the locker to deposit (while held).")
    pickup_code: str | None = Field(default=None, description="For the recipient, once the parcel is deposited.")
    cancel_refused: str | None = Field(
        default=None,
        description="Set when the locker refused the latest cancel, with its reason (e.g. the parcel was deposited "
        "meanwhile); the webhook `reservation.cancel_refused` says the same.",
    )

    @classmethod
    def of(cls, r: Reservation, secret: bytes | None = None, cancel_refused: str | None = None) -> "ReservationView":
        """The view of a stored reservation; with the controller's ``secret``, the codes that apply now."""
        deposit_code = pickup_code = None
        if secret is not None and r.node_id and r.compartment and r.hold_until and r.pickup_until:
            key = node_key(secret, r.node_id)
            if r.state in (ReservationState.PENDING, ReservationState.HELD):
                deposit_code = offline_code(
                    key, CodePurpose.DEPOSIT, r.node_id, r.compartment, r.reservation_id, r.created_at, r.hold_until
                )
            elif r.state is ReservationState.DEPOSITED:
                pickup_code = offline_code(
                    key, CodePurpose.PICKUP, r.node_id, r.compartment, r.reservation_id, r.created_at, r.pickup_until
                )
        return cls(
            deposit_code=deposit_code,
            pickup_code=pickup_code,
            cancel_refused=cancel_refused,
            reservation_id=r.reservation_id,
            state=r.state,
            site=r.site_id,
            node_id=r.node_id,
            compartment=r.compartment,
            size=r.size,
            parcel_ref=r.parcel_ref,
            hold_until=r.hold_until,
            pickup_until=r.pickup_until,
            wait_until=r.wait_until,
        )


class Reservations:
    """Decides, stores and follows reservations; thread-safe (HTTP worker threads and the ingest thread)."""

    def __init__(
        self,
        store: ReservationStore,
        fleet: Fleet,
        sites: dict[str, Site],
        commands: Commands,
        *,
        metrics: Metrics,
        secret: bytes,
        store_lines: Callable[[list[str]], None] = lambda _lines: None,
        clock: Callable[[], float],
        hold_grace: timedelta = timedelta(minutes=30),
        pickup_window: timedelta = timedelta(days=3),
        command_ttl: timedelta = timedelta(minutes=5),
        policy: Policy | None = None,
        limits: Limits | None = None,
        maintenance: Container[str] = frozenset(),
        updating: Container[str] = frozenset(),
    ) -> None:
        self.store = store
        self.fleet = fleet
        self.allocator = Allocator(sites, policy or Policy())
        self._commands = commands
        self.metrics = metrics
        self._store_lines = store_lines
        self.secret = secret
        self._clock = clock
        self._maintenance = maintenance
        self._updating = updating
        """Nodes a firmware rollout has in flight (the contention policy's ``updating``): no new reservations."""
        self._hold_grace = hold_grace
        self._pickup_window = pickup_window
        self._command_ttl = command_ttl
        self.limits = limits or Limits()
        self._lock = threading.Lock()
        self._booked = {(r.node_id, r.compartment) for r in store.active() if r.node_id and r.compartment}
        """Compartments held by an active reservation, kept in memory (decisions must not query for it)."""
        for pending in (r for r in store.active() if r.state is ReservationState.PENDING):
            on_result = functools.partial(self._on_reserve_result, pending.reservation_id)
            self._commands.track(reserve_command_id(pending.reservation_id), on_result, self._now() + command_ttl)
        for placed in store.active():  # a cancel's refusal may come after a restart (the node was away)
            cancel_id = awaited_cancel(store.trail(placed.reservation_id))
            if cancel_id is not None:
                on_result = functools.partial(self._on_cancel_result, placed.reservation_id)
                self._commands.track(cancel_id, on_result, self._now() + command_ttl)
        for waiting in store.waitlisted():  # a restart keeps everyone's place in the queue
            assert waiting.wait_until is not None
            queue = self.allocator.waiting.setdefault((waiting.site_id, Priority(waiting.priority)), deque())
            queue.append(_as_request(waiting))

    def create(self, key: ApiKey, idempotency_key: str, request: ReservationRequest) -> StoredResponse:
        """Decide a request (or repeat the answer to an earlier one with the same idempotency key).

        :class:`NotAllowedError` if the key was not granted the request's priority.
        """
        refusal = priority_refusal(request.priority, frozenset(Priority(p) for p in key.priorities))
        if refusal is not None:
            self.metrics.reservation_requests.labels("invalid").inc()
            log.warning(
                "reservation refused: priority not granted partner=%s key_id=%s priority=%d action=issue the partner "
                "a key with `lockerfleet keys --priorities` if it should have it",
                key.partner,
                key.key_id,
                request.priority,
            )
            raise NotAllowedError(refusal)
        fingerprint = hashlib.sha256(request.model_dump_json().encode()).hexdigest()
        with self._lock:
            started = time.perf_counter()
            earlier = self.store.recall(key.partner, idempotency_key)
            if earlier is not None:
                if earlier.fingerprint != fingerprint:
                    self.metrics.reservation_requests.labels("invalid").inc()
                    return StoredResponse(
                        fingerprint,
                        422,
                        {"detail": "this Idempotency-Key was used for a different request; use a new key"},
                    )
                self.metrics.reservation_requests.labels("replayed").inc()
                return self._with_codes(earlier)
            too_early = arrival_refusal(request.expected_arrival, self._now(), self.limits.hold_lead_max)
            if too_early is not None:  # invalid input, not a decision: nothing is remembered
                self.metrics.reservation_requests.labels("invalid").inc()
                return StoredResponse(fingerprint, 422, {"detail": too_early})
            status, body = self._decide(key, request, idempotency_key, fingerprint)
            answer = StoredResponse(fingerprint, status, body)
            if status != 201:  # a grant stored its answer together with the reservation
                answer = self.store.remember(key.partner, idempotency_key, answer, self._now())
            elapsed = time.perf_counter() - started
            outcome = "granted" if status == 201 else "refused"
            self.metrics.reservation_decision_seconds.observe(elapsed)
            self.metrics.reservation_requests.labels(outcome).inc()
            reservation_id = str(body.get("reservation_id", ""))
            self._store_lines(
                [reservation_line(request.site, outcome, round(elapsed * 1000, 3), reservation_id, time.time_ns())]
            )
            return answer

    def _with_codes(self, answer: StoredResponse) -> StoredResponse:
        """A stored grant with the codes it was answered with (the store keeps none; they are derived again)."""
        if answer.status_code != 201:
            return answer
        return replace(answer, body=answer.body | self._codes_of(answer.body))

    def event_with_codes(self, event: dict[str, Any]) -> dict[str, Any]:
        """A queued webhook event with the codes its reservation view carried (derived again at delivery)."""
        view = event.get("reservation")
        if not isinstance(view, dict):
            return event
        return event | {"reservation": view | self._codes_of(view)}

    def _codes_of(self, view: dict[str, Any]) -> dict[str, Any]:
        """The codes a stored view was sent with: those of its reservation in the view's state."""
        reservation = self.store.get(str(view.get("reservation_id")))
        if reservation is None or "state" not in view:
            return {}
        as_sent = replace(reservation, state=ReservationState(view["state"]))
        return ReservationView.of(as_sent, self.secret).model_dump(mode="json", include=set(CODE_FIELDS))

    def cancel(self, reservation: Reservation) -> None:
        """Ask the node to release the hold; the state changes when the node confirms.

        :class:`NotCancellableError` when the controller already knows it is too late (deposited, or ended). A
        refusal by the node is kept (:meth:`view` shows it) and sent to the partner's webhook.
        """
        now = self._now()
        with self._lock:
            current = self.store.get(reservation.reservation_id) or reservation
            why_not = too_late(current.reservation_id, current.state)
            if why_not is not None:
                raise NotCancellableError(why_not)
            if current.state is ReservationState.WAITLISTED:
                self.store.set_state(current.reservation_id, ReservationState.CANCELLED, now)
                self.store.audit(current.reservation_id, current.partner, "cancelled", "while waitlisted", now)
                return
        if current.node_id is None:
            return
        command = self._commands.cancel(current.reservation_id, current.node_id, self._command_ttl)
        self.store.audit(current.reservation_id, current.partner, CANCEL_REQUESTED, command.command_id, now)
        self._commands.send(command, functools.partial(self._on_cancel_result, current.reservation_id))

    def view(self, reservation: Reservation) -> ReservationView:
        """The partner's view of ``reservation``: its codes, and the node's refusal of the latest cancel."""
        refusal = refused_cancel(self.store.trail(reservation.reservation_id))
        return ReservationView.of(reservation, self.secret, refusal)

    def on_ledger_event(self, event: LedgerEvent) -> None:
        """A node reported a change of its ledger (called on the ingest thread)."""
        if event.reservation_id is not None:
            self._report(event.reservation_id, Report(event.boot_id, event.seq, event.transition), event.node_id)
        # counted once applied: the store down makes the delivery try again, and that is no second transition
        self.metrics.edge_transitions.labels(event.transition.value, event.via).inc()

    def _on_reserve_result(self, reservation_id: str, result: CommandResult) -> None:
        """The node answered a ``reserve``; a refusal ends the reservation as refused."""
        if result.status is CommandStatus.REJECTED:
            self._report(reservation_id, Report(result.boot_id, result.seq, None), result.node_id)

    def _on_cancel_result(self, reservation_id: str, result: CommandResult) -> None:
        """The node answered a ``cancel``; a refusal is audited and sent to the partner (the state stays the node's)."""
        if result.status not in NOT_DONE:
            return  # done: the node's ledger event changes the state
        reason = f"{result.status.value}: {result.detail or 'no detail'}"
        with self._lock:
            stored = self.store.get(reservation_id)
            if stored is None or stored.node_id != result.node_id:
                return
            now = self._now()
            self.store.audit(reservation_id, "node", CANCEL_REFUSED, reason, now)
            self._send_event(stored, CANCEL_REFUSED, f"{reservation_id}:{CANCEL_REFUSED}:{result.command_id}", now)
        log.info(
            "cancel refused by the node node=%s reservation_id=%s partner=%s reason=%s action=none (the partner "
            "is told; the reservation follows the node)",
            result.node_id,
            reservation_id,
            stored.partner,
            reason,
        )

    def _report(self, reservation_id: str, report: Report, node_id: str) -> None:
        with self._lock:
            stored = self.store.get(reservation_id)
            if stored is None or stored.node_id != node_id:
                return  # not ours (another controller's store, or a node reporting on something it doesn't hold)
            outcome = apply(View(stored.state, stored.last_report), report)
            if outcome.view.state is not stored.state or outcome.view.last != stored.last_report:
                self.store.set_state(reservation_id, outcome.view.state, self._now(), outcome.view.last)
                if outcome.view.state not in ACTIVE_STATES and stored.compartment is not None:
                    self._booked.discard((node_id, stored.compartment))
            if stored.compartment is not None:
                self.allocator.confirmed(node_id, stored.compartment)
            if outcome.notify is not None:
                self._notify(reservation_id, outcome.notify, f"{report.boot_id}-{report.seq}")
                log.info("reservation %s node=%s reservation_id=%s", outcome.notify.value, node_id, reservation_id)
            if outcome.view.state not in ACTIVE_STATES and self.allocator.waiting:
                self._serve_waitlists()  # a compartment may have come free

    def _notify(self, reservation_id: str, state: ReservationState, tag: str) -> None:
        """Audit a change and queue the partner's webhook for it."""
        now = self._now()
        actor = "controller" if tag == "waitlist" else "node"
        self.store.audit(reservation_id, actor, state.value, tag, now)
        updated = self.store.get(reservation_id)
        assert updated is not None
        self._send_event(updated, state.value, f"{reservation_id}:{state.value}:{tag}", now)

    def _send_event(self, reservation: Reservation, event: str, event_id: str, now: datetime) -> None:
        """Queue the partner's webhook ``reservation.<event>`` with the reservation's view."""
        self.store.enqueue_webhook(
            reservation.partner,
            event_id,
            {
                "event_id": event_id,
                "type": f"reservation.{event}",
                "at": now.isoformat(),
                "reservation": self.view(reservation).model_dump(mode="json"),
            },
            now,
        )

    def serve_waitlists(self) -> None:
        """Give freed capacity to whoever waits first, and expire those who waited too long (called periodically)."""
        with self._lock:
            self._serve_waitlists()

    def _serve_waitlists(self) -> None:
        now = self._now()
        for waiting in self.store.waitlisted():
            if waiting.wait_until is not None and waiting.wait_until <= now:
                self.store.set_state(waiting.reservation_id, ReservationState.EXPIRED, now)
                self._notify(waiting.reservation_id, ReservationState.EXPIRED, "waitlist")
        nodes, compartments, _ = self._fleet_now()
        for site_id in {site for site, _priority in self.allocator.waiting}:
            while (decision := self.allocator.next_waiting(site_id, nodes, compartments, self._clock())) is not None:
                assert decision.node_id is not None and decision.compartment_id is not None
                current = self.store.get(decision.request.request_id)
                if current is None or current.state is not ReservationState.WAITLISTED:
                    self.allocator.confirmed(decision.node_id, decision.compartment_id)
                    continue  # cancelled or expired while waiting
                hold_until = now + self._hold_grace
                try:
                    self.store.assign(
                        decision.request.request_id,
                        decision.node_id,
                        decision.compartment_id,
                        hold_until,
                        hold_until + self._pickup_window,
                        now,
                    )
                except DoubleBookingError:
                    self.allocator.confirmed(decision.node_id, decision.compartment_id)
                    continue
                self._booked.add((decision.node_id, decision.compartment_id))
                compartments = [
                    c
                    for c in compartments
                    if (c.node_id, c.compartment_id) != (decision.node_id, decision.compartment_id)
                ]
                assigned = self.store.get(decision.request.request_id)
                assert assigned is not None
                self.store.audit(assigned.reservation_id, "controller", "assigned", "capacity freed", now)
                self._send_reserve(assigned)

    def _decide(
        self, key: ApiKey, request: ReservationRequest, idempotency_key: str, fingerprint: str
    ) -> tuple[int, dict[str, Any]]:
        now = self._now()
        reservation_id = f"res-{uuid.uuid4().hex}"
        nodes, compartments, capacities = self._fleet_now()
        capacity = capacities.get(request.site, 0)
        quota = site_quota(capacity, self.limits.site_quota_share, key.quota_per_site)
        holding = self.store.holding(key.partner, request.site)
        over_quota = quota_refusal(key.partner, request.site, holding, quota)
        if over_quota is not None:
            log.info(
                "reservation refused over quota partner=%s site=%s holding=%d quota=%d capacity=%d "
                "action=none (the partner waits for its reservations to be deposited, cancelled or expire)",
                key.partner,
                request.site,
                holding,
                quota,
                capacity,
            )
            return 409, {"detail": over_quota, "quota": quota, "holding": holding}
        wait_until = self._clock() + request.wait_s if request.wait_s else None
        decision = self.allocator.request(
            Request(reservation_id, request.site, request.size, request.priority, wait_until),
            nodes,
            compartments,
            self._clock(),
        )
        if decision.verdict is Verdict.WAITLISTED:
            assert wait_until is not None
            waiting = replace(
                _requested(reservation_id, key, request, now),
                state=ReservationState.WAITLISTED,
                wait_until=datetime.fromtimestamp(wait_until, UTC),
            )
            self.store.insert(waiting)
            self.store.audit(reservation_id, key.partner, "waitlisted", request.model_dump_json(), now)
            return 202, ReservationView.of(waiting).model_dump(mode="json") | {"position": decision.position}
        if decision.verdict is not Verdict.GRANTED:
            return 409, {
                "detail": f"no compartment of size {request.size.value} or larger free at {request.site}: "
                f"{decision.reason}",
                "nearest_sites_with_capacity": list(decision.alternatives),
            }
        assert decision.node_id is not None and decision.compartment_id is not None
        hold_until = max(request.expected_arrival, now) + self._hold_grace
        reservation = replace(
            _requested(reservation_id, key, request, now),
            node_id=decision.node_id,
            compartment=decision.compartment_id,
            hold_until=hold_until,
            pickup_until=hold_until + self._pickup_window,
        )
        body = ReservationView.of(reservation, self.secret).model_dump(mode="json")
        try:
            self.store.record_grant(
                reservation, idempotency_key, StoredResponse(fingerprint, 201, body), request.model_dump_json()
            )
        except DoubleBookingError:
            self.allocator.confirmed(decision.node_id, decision.compartment_id)
            return 409, {"detail": "the chosen compartment was booked meanwhile; retry with a new Idempotency-Key"}
        self._booked.add((decision.node_id, decision.compartment_id))
        self._send_reserve(reservation)
        return 201, body

    def _send_reserve(self, reservation: Reservation) -> None:
        assert reservation.node_id and reservation.compartment and reservation.hold_until and reservation.pickup_until
        command = self._commands.reserve(
            reservation.reservation_id,
            reservation.node_id,
            reservation.compartment,
            reservation.created_at,
            reservation.hold_until,
            reservation.pickup_until,
            self._command_ttl,
        )
        self._commands.send(command, functools.partial(self._on_reserve_result, reservation.reservation_id))

    def _fleet_now(self) -> tuple[list[NodeCondition], list[Compartment], dict[str, int]]:
        """Every node with a site, its compartments that no active reservation holds, and each site's capacity
        (compartments whatever their state: the base of the per-partner quota)."""
        now = self._clock()
        booked = self._booked
        nodes: list[NodeCondition] = []
        compartments: list[Compartment] = []
        capacities: dict[str, int] = {}
        for record in self.fleet.records():
            site = record.birth.site
            if site is None:
                continue
            capacities[site] = capacities.get(site, 0) + len(record.birth.compartments)
            battery = record.telemetry.battery.soc_pct if record.telemetry is not None else 0.0
            nodes.append(
                NodeCondition(
                    record.node_id,
                    site,
                    record.state(now) is NodeState.ONLINE,
                    battery,
                    maintenance=record.node_id in self._maintenance,
                    updating=record.node_id in self._updating,
                )
            )
            compartments.extend(
                Compartment(record.node_id, c.id, c.size, free=True)
                for c in record.birth.compartments
                if (record.node_id, c.id) not in booked
            )
        return nodes, compartments, capacities

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)


def _requested(reservation_id: str, key: ApiKey, request: ReservationRequest, now: datetime) -> Reservation:
    """A new reservation as requested, not yet placed (state pending, no compartment)."""
    return Reservation(
        reservation_id=reservation_id,
        partner=key.partner,
        site_id=request.site,
        size=request.size.value,
        parcel_ref=request.parcel_ref,
        priority=int(request.priority),
        state=ReservationState.PENDING,
        node_id=None,
        compartment=None,
        hold_until=None,
        pickup_until=None,
        created_at=now,
        updated_at=now,
    )


def _as_request(r: Reservation) -> Request:
    """The allocator's view of a waitlisted reservation."""
    assert r.wait_until is not None
    return Request(r.reservation_id, r.site_id, CompartmentSize(r.size), Priority(r.priority), r.wait_until.timestamp())


def sites_from(items: list[dict[str, Any]]) -> dict[str, Site]:
    """Sites from their JSON description (``[{"site_id": …, "lat": …, "lon": …}]``)."""
    return {str(i["site_id"]): Site(str(i["site_id"]), float(i["lat"]), float(i["lon"])) for i in items}
