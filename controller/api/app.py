"""The HTTP API: operators' ``/v1/nodes``, couriers' ``/v1/reservations``, ``/healthz``, ``/readyz``, ``/metrics``.

FastAPI; the OpenAPI document is at ``/openapi.json``, and ``/docs`` (Swagger UI) and ``/redoc`` load their scripts
from the controller itself (fastapi-offline's copies), so they work on a control network with no internet.
"""

import asyncio
import contextlib
import hmac
import re
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import FastAPI, Header, HTTPException, Response
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from controller.api import errors
from controller.api.alerts import alerts_router
from controller.api.field import field_router
from controller.api.guard import RequestGuard
from controller.api.models import ApiError
from controller.api.nodes import nodes_router, operator_auth
from controller.api.reservations import reservations_router
from controller.api.rollouts import rollouts_router
from controller.commands.rate_limit import KeyedLimits
from controller.ingest.health import Readiness
from controller.releases.http import releases_router
from controller.service import Controller

DOCS_ASSETS = "/docs-assets"
"""Where the docs pages' scripts and styles are served from."""
ARTIFACTS = re.compile(r"/v1/releases/[^/]+/artifact")
"""Release artifacts need no key: nodes download them holding none, and trust them for their signed sha256."""


_CHALLENGE = {"WWW-Authenticate": "Bearer"}


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

    app = FastAPIOffline(
        static_url=DOCS_ASSETS,
        swagger_ui_parameters={"validatorUrl": None},  # no call to an online validator either
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
            controller.reservations,
            controller.opens,
            KeyedLimits(per_minute, burst),
            KeyedLimits(2 * per_minute, 2 * burst),
            controller.broker_up,
        )
    )
    errors.install(app)
    app.add_middleware(
        RequestGuard,
        authenticate=controller.find_key,
        max_body_bytes=controller.settings.max_body_bytes,
        failed_auth_per_min=controller.settings.failed_auth_per_min,
        failed_auth_burst=max(1, round(controller.settings.failed_auth_per_min / 3)),
        unguarded=ARTIFACTS,
    )

    def health_body() -> dict[str, object]:
        health = controller.health()
        return {
            "status": health.detail,
            "readiness": health.readiness.value,
            "mqtt_connected": controller.broker_up(),
            "influx_unreachable_s": health.influx_unreachable_s,
            "messages_waiting": health.messages_waiting,
            "oldest_unstored_s": round(health.oldest_unstored_s, 3),
            "buffered_messages": controller.pipeline.waiting,
            "nodes": len(controller.fleet.records()),
        }

    @app.get("/healthz", responses={503: {"model": ApiError}})
    def healthz() -> JSONResponse:
        """Liveness: 200 while the controller's threads run (whatever the broker or InfluxDB do), else 503."""
        body = health_body()
        alive = controller.alive()
        body["alive"] = alive
        return JSONResponse(body, status_code=200 if alive else 503)

    @app.get("/readyz", responses={503: {"model": ApiError}})
    def readyz() -> JSONResponse:
        """Readiness: 200 serving or degraded (InfluxDB or telemetry behind; opens work), 503 when opens cannot."""
        body = health_body()
        return JSONResponse(body, status_code=503 if body["readiness"] == Readiness.NOT_READY else 200)

    metrics_token = (
        controller.settings.metrics_token_file.read_text().strip() if controller.settings.metrics_token_file else None
    )

    @app.get("/metrics", response_class=Response, responses={401: {"model": ApiError}})
    def metrics(authorization: Annotated[str | None, Header()] = None) -> Response:
        """Prometheus exposition of the controller's metrics (with --metrics-token-file: for that bearer token only)."""
        if metrics_token is not None and not hmac.compare_digest(authorization or "", f"Bearer {metrics_token}"):
            raise HTTPException(401, "/metrics needs the scrape token: Authorization: Bearer <token>", _CHALLENGE)
        return Response(generate_latest(controller.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.include_router(nodes_router(controller))
    app.include_router(alerts_router(controller))
    operator = operator_auth(controller)
    app.include_router(releases_router(controller.settings.releases_dir, operator=operator))
    app.include_router(rollouts_router(controller.rollouts, operator))
    app.include_router(field_router(controller))

    return app
