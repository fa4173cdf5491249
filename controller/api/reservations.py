"""The courier reservations API: ``/v1/reservations`` with per-partner API keys and idempotency keys."""

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Path, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from controller.api.errors import OPEN_ERRORS
from controller.api.guard import authenticated
from controller.api.models import ApiError, OpenResponse, ReservationOpenRequest
from controller.api.open_keys import REUSED, OpenKeys
from controller.commands.opens import Opens
from controller.commands.rate_limit import KeyedLimits, RateLimitedError
from controller.reservations.service import NotAllowedError, ReservationRequest, Reservations, ReservationView
from controller.store import tokens as api_tokens
from controller.store.operators import TOKEN_PREFIX as OPERATOR_TOKEN_PREFIX
from controller.store.reservations import ApiKey, Reservation, ReservationState, StoredResponse
from schemas import ReservationStep

_bearer = HTTPBearer(
    auto_error=False, scheme_name="PartnerKey", description="A courier partner's API key: `Authorization: Bearer lf_…`."
)
BROKER_DOWN = "the controller has lost the MQTT broker, so no locker can confirm a hold now; retry shortly"
ReservationIdPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")]


def authenticate(reservations: Reservations, http: Request, credentials: HTTPAuthorizationCredentials | None) -> ApiKey:
    """The caller's API key (the one the guard found, else looked up), or 401 / 403."""
    if credentials is None:
        raise HTTPException(401, "missing API key: send Authorization: Bearer <key>", {"WWW-Authenticate": "Bearer"})
    found = authenticated(http)
    key = found if found is not None else reservations.store.authenticate(credentials.credentials)
    if isinstance(key, ApiKey):
        return key
    if api_tokens.split(credentials.credentials, OPERATOR_TOKEN_PREFIX) is not None:
        raise HTTPException(403, "an operator key cannot use the reservations API; use a courier partner's key")
    raise HTTPException(401, "unknown or revoked API key", {"WWW-Authenticate": "Bearer"})


def partner_key(reservations: Reservations) -> Callable[..., ApiKey]:
    """A FastAPI dependency: the caller's API key, or 401."""

    def partner(http: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> ApiKey:
        return authenticate(reservations, http, credentials)

    return partner


def owned(reservations: Reservations, key: ApiKey, reservation_id: str) -> Reservation:
    """The reservation if it belongs to ``key``'s partner; 404 or 403 otherwise."""
    stored = reservations.store.get(reservation_id)
    if stored is None:
        raise HTTPException(404, f"no reservation {reservation_id!r}")
    if stored.partner != key.partner:
        raise HTTPException(403, "this reservation belongs to another partner")
    return stored


def reservations_router(
    reservations: Reservations,
    opens: Opens,
    per_key: KeyedLimits,
    per_ip: KeyedLimits,
    broker_up: Callable[[], bool] = lambda: True,
) -> APIRouter:
    """Routes bound to ``reservations``; every POST counts against its API key's and its address's limits."""
    router = APIRouter(prefix="/v1/reservations", tags=["reservations"])
    partner = partner_key(reservations)
    # Decisions are serial anyway (one lock): one thread for them keeps a flash crowd of requests from
    # crowding the decision out of the CPU (with a thread per request, its tail latency grew tenfold).
    decider = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reservation-decider")
    open_keys = OpenKeys()

    def within_limits(http: Request, key: ApiKey) -> None:
        now = time.monotonic()
        client = http.client.host if http.client else "unknown"
        for limit, wait_s in (("key", per_key.take(key.key_id, now)), ("ip", per_ip.take(client, now))):
            if wait_s > 0:
                reservations.metrics.rate_limited.labels(limit).inc()
                raise RateLimitedError(f"too many requests for this {limit}; retry in {wait_s:.1f} s", wait_s)

    @router.post(
        "",
        status_code=201,
        responses={
            401: {"model": ApiError},
            403: {"model": ApiError, "description": "The key is not scoped to this site or granted this priority."},
            409: {
                "model": ApiError,
                "description": "No capacity (the body names the nearest sites that have some), or the partner's "
                "quota at the site is used up.",
            },
            503: {"model": ApiError, "description": "The controller has lost the broker; retry shortly."},
            429: {"model": ApiError, "description": "Too many requests for this key or address; see Retry-After."},
            422: {
                "model": ApiError,
                "description": "Invalid body, an arrival beyond the hold window, or an Idempotency-Key reused for "
                "another request.",
            },
        },
    )
    async def create_reservation(
        request: ReservationRequest,
        http: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        idempotency_key: Annotated[str, Header(min_length=1, max_length=128)],
    ) -> JSONResponse:
        """Reserve a compartment at a site. It is ``pending`` until the node confirms the hold, then ``held``.

        The same ``Idempotency-Key`` always gets the same answer, and never a second reservation.
        """

        def decide() -> StoredResponse:
            key = authenticate(reservations, http, credentials)
            within_limits(http, key)
            if not broker_up():
                raise HTTPException(503, BROKER_DOWN)
            if request.site not in key.sites:
                raise HTTPException(403, f"this key may not reserve at site {request.site!r}")
            try:
                return reservations.create(key, idempotency_key, request)
            except NotAllowedError as exc:
                raise HTTPException(403, str(exc)) from exc

        answer = await asyncio.get_running_loop().run_in_executor(decider, decide)
        return JSONResponse(answer.body, status_code=answer.status_code)

    @router.get(
        "/{reservation_id}", responses={401: {"model": ApiError}, 403: {"model": ApiError}, 404: {"model": ApiError}}
    )
    def get_reservation(reservation_id: ReservationIdPath, key: Annotated[ApiKey, Depends(partner)]) -> ReservationView:
        """One of the partner's reservations, as the node last reported it, with the code that applies now."""
        return reservations.view(owned(reservations, key, reservation_id))

    @router.delete(
        "/{reservation_id}",
        status_code=202,
        responses={
            401: {"model": ApiError},
            403: {"model": ApiError},
            404: {"model": ApiError},
            409: {"model": ApiError, "description": "Too late: deposited, picked up, cancelled, expired or refused."},
            503: {"model": ApiError, "description": "The controller has lost the broker; retry shortly."},
        },
    )
    def cancel_reservation(
        reservation_id: ReservationIdPath, key: Annotated[ApiKey, Depends(partner)]
    ) -> ReservationView:
        """Ask the node to release the hold (``pending`` or ``held``; a ``waitlisted`` request ends at once).

        The state becomes ``cancelled`` when the node confirms. If the node refuses (a courier deposited
        meanwhile), the view's ``cancel_refused`` gives its reason and the webhook ``reservation.cancel_refused``
        is sent.
        """
        stored = owned(reservations, key, reservation_id)
        if stored.node_id is not None and not broker_up():
            raise HTTPException(503, "the controller has lost the MQTT broker, so no cancel can reach the locker now")
        reservations.cancel(stored)
        return reservations.view(reservations.store.get(reservation_id) or stored)

    @router.post(
        "/{reservation_id}/open",
        responses={
            401: {"model": ApiError},
            403: {"model": ApiError},
            **OPEN_ERRORS,
            422: {"model": ApiError, "description": "Invalid body, or an Idempotency-Key reused for another request."},
        },
    )
    async def open_reservation(
        reservation_id: ReservationIdPath,
        key: Annotated[ApiKey, Depends(partner)],
        request: ReservationOpenRequest,
        idempotency_key: Annotated[str, Header(min_length=1, max_length=128)],
    ) -> OpenResponse:
        """Open the reservation's compartment for one step: the deposit while held, the pickup once deposited.

        Every request for a step gets the first answer that drove the door, so a retry (same ``Idempotency-Key``)
        never opens twice; after a refusal or a timeout a retry tries again. A key reused for another reservation
        or step gets 422.
        """
        stored = await asyncio.to_thread(owned, reservations, key, reservation_id)
        step = request.step
        if not open_keys.claim(key.partner, idempotency_key, reservation_id, step):
            raise HTTPException(422, REUSED)
        expected = ReservationState.HELD if step is ReservationStep.DEPOSIT else ReservationState.DEPOSITED
        if stored.node_id is None or stored.compartment is None:
            raise HTTPException(409, f"reservation {reservation_id} is {stored.state.value}: nothing to open")
        if stored.state is not expected and not opens.step_started(reservation_id, step):
            raise HTTPException(
                409,
                f"reservation {reservation_id} is {stored.state.value}: no {step.value} to open now"
                + (" (the deposit is done; the pickup is step=pickup)" if step is ReservationStep.DEPOSIT else ""),
            )
        opened = await opens.open_step(
            stored.node_id,
            stored.compartment,
            reservation_id,
            step,
            requested_by=f"partner:{key.partner}",
            timeout_s=request.timeout_s,
        )
        return OpenResponse.of(opened)

    return router
