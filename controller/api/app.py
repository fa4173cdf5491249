"""The HTTP API: operators' ``/v1/nodes``, couriers' ``/v1/reservations``, ``/healthz`` and ``/metrics``.

FastAPI; the OpenAPI document is at ``/openapi.json``.
"""

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Body, Depends, FastAPI, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from controller.api.models import ApiError, OpenRequest, OpenResponse
from controller.api.nodes import OpenFailedError, node_view, nodes_router, perform_open
from controller.api.reservations import ReservationIdPath, owned, partner_key, reservations_router
from controller.commands.rate_limit import KeyedLimits, RateLimitedError
from controller.service import Controller
from controller.store.reservations import ApiKey, ReservationState


def create_app(controller: Controller) -> FastAPI:
    """The ASGI app; its lifespan starts and stops ``controller``."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(controller.start)
        snapshots = asyncio.create_task(controller.snapshot_fleet())
        try:
            yield
        finally:
            snapshots.cancel()
            await asyncio.to_thread(controller.stop)

    app = FastAPI(
        title="lockerfleet controller",
        summary="Fleet state and courier opens for smart parcel lockers.",
        version="1",
        lifespan=lifespan,
        responses={422: {"model": ApiError, "description": "The request is malformed."}},
    )

    per_minute = controller.settings.courier_rate_per_min / 60
    burst = controller.settings.courier_burst
    app.include_router(
        reservations_router(
            controller.reservations, KeyedLimits(per_minute, burst), KeyedLimits(2 * per_minute, 2 * burst)
        )
    )
    app.add_exception_handler(OpenFailedError, _open_failed)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(RateLimitedError, _rate_limited)

    @app.get("/healthz", responses={503: {"model": ApiError}})
    def healthz() -> JSONResponse:
        """200 while connected to the broker; 503 otherwise."""
        ok = controller.link.connected.is_set()
        body = {
            "mqtt_connected": ok,
            "buffered_messages": controller.pipeline.waiting,
            "nodes": len(controller.fleet.records()),
        }
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/metrics", response_class=Response)
    def metrics() -> Response:
        """Prometheus exposition of the controller's metrics."""
        return Response(generate_latest(controller.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.include_router(nodes_router(controller))

    partner = partner_key(controller.reservations)

    @app.post(
        "/v1/reservations/{reservation_id}/open",
        tags=["reservations"],
        responses={
            401: {"model": ApiError},
            403: {"model": ApiError},
            404: {"model": ApiError},
            409: {"model": ApiError, "description": "Nothing to open now (not held nor deposited), or node offline."},
            429: {"model": ApiError},
            502: {"model": ApiError},
            504: {"model": ApiError},
        },
    )
    async def open_reservation(
        reservation_id: ReservationIdPath,
        key: Annotated[ApiKey, Depends(partner)],
        request: Annotated[OpenRequest | None, Body()] = None,
    ) -> OpenResponse:
        """Open the reservation's compartment: the courier's deposit while held, the pickup once deposited."""
        stored = await asyncio.to_thread(owned, controller.reservations, key, reservation_id)
        if stored.state not in (ReservationState.HELD, ReservationState.DEPOSITED) or stored.node_id is None:
            raise HTTPException(409, f"reservation {reservation_id} is {stored.state.value}: nothing to open")
        assert stored.compartment is not None
        node = node_view(controller, stored.node_id)
        return await perform_open(
            controller, node, stored.compartment, request, f"partner:{key.partner}", reservation_id
        )

    return app


async def _rate_limited(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RateLimitedError)
    headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after_s)))}
    return JSONResponse(ApiError(detail=str(exc)).model_dump(exclude_none=True), status_code=429, headers=headers)


async def _open_failed(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, OpenFailedError)
    return JSONResponse(exc.body.model_dump(exclude_none=True), status_code=exc.status)


async def _invalid_request(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
    return JSONResponse(ApiError(detail=f"invalid request: {problems}").model_dump(exclude_none=True), status_code=422)
