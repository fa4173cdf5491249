"""The courier HTTP API, ``/healthz`` and ``/metrics`` (FastAPI; OpenAPI at ``/openapi.json``)."""

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Body, Depends, FastAPI, HTTPException, Path, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from controller.api_models import ApiError, NodeView, OpenRequest, OpenResponse
from controller.fleet import NodeState
from controller.rate_limit import KeyedLimits, RateLimitedError
from controller.reservation_store import ApiKey, ReservationState
from controller.reservations_api import ReservationIdPath, owned, partner_key, reservations_router
from controller.service import Controller, open_outcome
from schemas import CommandResult, CommandStatus
from schemas.types import NODE_ID_PATTERN

NodeIdPath = Annotated[str, Path(pattern=NODE_ID_PATTERN, description="The node's id, as in its topics.")]
CompartmentPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,15}$", description="Compartment id.")]

_STATUS_CODES = {
    CommandStatus.DONE: 200,
    CommandStatus.DUPLICATE: 200,
    CommandStatus.REJECTED: 409,
    CommandStatus.EXPIRED: 504,
    CommandStatus.FAILED: 502,
    CommandStatus.UNKNOWN: 502,
}


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

    def node_or_404(node_id: str) -> NodeView:
        record = controller.fleet.get(node_id)
        if record is None:
            raise HTTPException(404, f"unknown node {node_id!r}: it never sent a birth to this controller")
        return NodeView.of(record, controller.clock())

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

    @app.get("/v1/nodes")
    def list_nodes(state: NodeState | None = None) -> list[NodeView]:
        """Every known node, optionally only those in one state."""
        now = controller.clock()
        views = [NodeView.of(r, now) for r in controller.fleet.records()]
        return [v for v in views if state is None or v.state == state]

    @app.get("/v1/nodes/{node_id}", responses={404: {"model": ApiError}})
    def get_node(node_id: NodeIdPath) -> NodeView:
        """One node with its state and latest telemetry."""
        return node_or_404(node_id)

    @app.post(
        "/v1/nodes/{node_id}/compartments/{compartment}/open",
        responses={
            404: {"model": ApiError, "description": "Unknown node or compartment."},
            409: {"model": ApiError, "description": "The node is offline, or refused the command."},
            429: {"model": ApiError, "description": "Fleet-wide open rate limit reached; see Retry-After."},
            502: {"model": ApiError, "description": "The node could not drive the lock (hardware fault, crash)."},
            504: {"model": ApiError, "description": "No answer in time; the command expires and never runs."},
        },
    )
    async def open_compartment(
        node_id: NodeIdPath,
        compartment: CompartmentPath,
        request: Annotated[OpenRequest | None, Body()] = None,
    ) -> OpenResponse:
        """Unlock one compartment and return what the door did (``opened``, ``already_open`` or ``jammed``)."""
        return await perform_open(controller, node_or_404(node_id), compartment, request)

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
        return await perform_open(controller, node_or_404(stored.node_id), stored.compartment, request, reservation_id)

    return app


async def perform_open(
    controller: Controller,
    node: NodeView,
    compartment: str,
    request: OpenRequest | None,
    reservation_id: str | None = None,
) -> OpenResponse:
    """Publish an open command and wait for the node's final answer; raise :class:`OpenFailedError` otherwise."""
    node_id = node.node_id
    started = time.perf_counter()
    if compartment not in {c.id for c in node.compartments}:
        known = ", ".join(c.id for c in node.compartments)
        raise HTTPException(404, f"node {node_id!r} has no compartment {compartment!r}; it has {known}")
    if node.state == NodeState.OFFLINE:
        raise HTTPException(
            409, f"node {node_id!r} is offline since {node.last_seen.isoformat()}; try again later or elsewhere"
        )
    wait_s = controller.open_limiter.take(time.monotonic())
    if wait_s > 0:
        controller.metrics.opens_limited.inc()
        raise RateLimitedError(
            f"fleet-wide open limit of {controller.settings.open_rate_per_min:g}/min reached (a safety limit against "
            f"mass remote opening); retry in {wait_s:.1f} s",
            wait_s,
        )
    timeout_s = (request.timeout_s if request else None) or controller.settings.open_timeout_s
    command = controller.new_open(node_id, compartment, timeout_s, reservation_id)
    answer = controller.opens.expect(command.command_id)
    controller.send(command)
    result: CommandResult | None = None
    try:
        result = await asyncio.wait_for(answer, timeout_s)
    except TimeoutError:
        controller.opens.forget(command.command_id)
    round_trip_s = time.perf_counter() - started
    controller.record_open(command, open_outcome(result), round_trip_s)
    if result is None:
        raise OpenFailedError(
            504,
            f"node {node_id!r} did not answer within {timeout_s:g} s; the command expires and will not run",
            command.command_id,
        )
    response = OpenResponse(
        command_id=command.command_id,
        node_id=node_id,
        compartment=compartment,
        status=result.status,
        outcome=result.outcome,
        detail=result.detail,
        round_trip_ms=round(round_trip_s * 1000, 3),
    )
    code = _STATUS_CODES.get(result.status, 502)
    if code != 200:
        raise OpenFailedError(
            code, f"node answered {result.status.value}: {result.detail or 'no detail'}", command.command_id
        )
    return response


class OpenFailedError(Exception):
    """An open that reached the node (or tried to) and did not end with the door driven."""

    def __init__(self, status: int, detail: str, command_id: str) -> None:
        super().__init__(detail)
        self.status = status
        self.body = ApiError(detail=detail, command_id=command_id)


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
