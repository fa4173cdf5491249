"""The field technicians' API (``/v1/field/…``, technician keys), the operators' ``/v1/work-orders`` and the page.

A technician (``Authorization: Bearer lftech_…``, issued by ``lockerfleet technician-key``) reads today's route and
says arrived and done; done never closes an order: the controller closes it once telemetry shows the fix and the
node stays healthy. ``GET /field`` is the technicians' page (static HTML and JS served by the controller, no key
needed to load it: it asks for the key and sends it with every API call).
"""

from collections.abc import Callable
from datetime import UTC, date, datetime
from importlib import resources
from typing import Annotated, Self

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from controller.api.guard import authenticated
from controller.api.models import ApiError
from controller.api.nodes import AUTH_ERRORS, operator_auth
from controller.fieldwork.service import StopView
from controller.service import Controller
from controller.store.fieldwork import TechnicianKey
from controller.store.operators import OperatorKey
from controller.swapqueue import (
    NotAssignedError,
    OrderState,
    SwapQueueError,
    UnknownWorkOrderError,
    WorkOrder,
)

OrderIdPath = Annotated[str, Path(pattern=r"^wo-[A-Za-z0-9_.:@*-]{1,240}$", description="e.g. wo-battery_swap:node-7")]

_technician_bearer = HTTPBearer(
    auto_error=False, scheme_name="TechnicianKey", description="A technician's key: `Authorization: Bearer lftech_…`."
)
_CHALLENGE = {"WWW-Authenticate": "Bearer"}
TECHNICIAN_ERRORS: dict[int | str, dict[str, object]] = {
    401: {"model": ApiError, "description": "No technician key, or an unknown or revoked one."},
    403: {"model": ApiError, "description": "Another kind of key, or an order assigned to someone else."},
}
ACTION_ERRORS: dict[int | str, dict[str, object]] = {
    404: {"model": ApiError, "description": "No such work order."},
    409: {"model": ApiError, "description": "The order is closed, or the action comes out of order."},
}


def _when(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


class WorkOrderView(BaseModel):
    """A work order: where, what, its state and its times."""

    order_id: str
    node_id: str
    site_id: str
    kind: str = Field(description="battery_swap, pack_replacement or field_repair.")
    problem: str = Field(description="The alert's summary, e.g. 'charge 15% at or below the 20% floor'.")
    severity: str
    state: OrderState = Field(
        description="open, assigned, arrived, awaiting_verification (done, the controller has not yet seen the fix "
        "hold in telemetry), verified or cancelled."
    )
    technician_id: str | None
    alert_ids: list[str]
    active_alert_ids: list[str]
    occurrences: int
    forecast_empty_at: datetime | None = Field(description="When the pack was forecast empty as the alert said.")
    created_at: datetime
    assigned_at: datetime | None
    arrived_at: datetime | None
    done_at: datetime | None
    evidence: str | None = Field(description="What telemetry showed: soc_jump, cycle_reset, pack_changed...")
    evidence_at: datetime | None
    healthy_since: datetime | None
    closed_at: datetime | None
    cancel_reason: str | None

    @classmethod
    def of(cls, o: WorkOrder, summary: str) -> Self:
        """The view of one order."""
        return cls(
            order_id=o.order_id,
            node_id=o.node_id,
            site_id=o.site_id,
            kind=o.kind.value,
            problem=summary,
            severity=o.severity.value,
            state=o.state,
            technician_id=o.technician_id,
            alert_ids=list(o.alert_ids),
            active_alert_ids=sorted(o.active_alert_ids),
            occurrences=o.occurrences,
            forecast_empty_at=_when(o.empty_at),
            created_at=datetime.fromtimestamp(o.created_at, UTC),
            assigned_at=_when(o.assigned_at),
            arrived_at=_when(o.arrived_at),
            done_at=_when(o.done_at),
            evidence=o.evidence and o.evidence.value,
            evidence_at=_when(o.evidence_at),
            healthy_since=_when(o.healthy_since),
            closed_at=_when(o.closed_at),
            cancel_reason=o.cancel_reason and o.cancel_reason.value,
        )


class ForecastView(BaseModel):
    """The node's battery forecast now."""

    soc_pct: float
    hours_to_empty: float | None = Field(description="None while the pack is not discharging.")
    slope_pct_per_h: float


class ParcelView(BaseModel):
    """A reservation holding a compartment of the node: a parcel waiting, or one about to come."""

    compartment: str | None
    state: str
    parcel_ref: str


class StopModel(BaseModel):
    """One stop of a technician's day."""

    order: WorkOrderView
    urgent: bool = Field(description="Forecast empty before the day ends.")
    lat: float | None
    lon: float | None
    geo_uri: str | None = Field(description="geo:lat,lon (opens the phone's map app).")
    forecast: ForecastView | None
    charge_pct: float | None = Field(description="State of charge in the node's last telemetry.")
    parcels: list[ParcelView]

    @classmethod
    def of(cls, s: StopView) -> Self:
        """The model of one stop."""
        fc = s.forecast
        return cls(
            order=WorkOrderView.of(s.order, s.summary),
            urgent=s.urgent,
            lat=s.at.lat if s.at else None,
            lon=s.at.lon if s.at else None,
            geo_uri=f"geo:{s.at.lat:.6f},{s.at.lon:.6f}" if s.at else None,
            forecast=None
            if fc is None
            else ForecastView(soc_pct=fc.soc_pct, hours_to_empty=fc.hours_to_empty, slope_pct_per_h=fc.slope_pct_per_h),
            charge_pct=s.charge_pct,
            parcels=[
                ParcelView(compartment=r.compartment, state=r.state.value, parcel_ref=r.parcel_ref) for r in s.parcels
            ],
        )


class RouteView(BaseModel):
    """A technician's day: stops still to visit in order, then orders awaiting verification, then those closed."""

    technician_id: str
    day: date
    stops: list[StopModel]


class OrderEventView(BaseModel):
    """One change of a work order."""

    kind: str
    at: datetime
    state: str
    technician_id: str | None


class WorkOrderDetail(WorkOrderView):
    """A work order with its history."""

    history: list[OrderEventView]


def field_router(controller: Controller) -> APIRouter:
    """``/v1/field`` (technicians), ``/v1/work-orders`` (operators) and ``/field`` (the page)."""
    router = APIRouter()
    operator = operator_auth(controller)
    field = controller.field

    def technician(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_technician_bearer)]
    ) -> TechnicianKey:
        if credentials is None:
            raise HTTPException(401, "missing technician key: send Authorization: Bearer <key>", _CHALLENGE)
        key = authenticated(request) or controller.find_key(credentials.credentials)
        if isinstance(key, TechnicianKey):
            return key
        if key is not None:
            raise HTTPException(403, "not a technician key: ask for one (lockerfleet technician-key)")
        raise HTTPException(401, "unknown or revoked technician key", _CHALLENGE)

    @router.get("/v1/field/route", tags=["field"], responses=TECHNICIAN_ERRORS)
    def route(key: Annotated[TechnicianKey, Depends(technician)]) -> RouteView:
        """Today's stops in visiting order (planned when the orders changed; orders on it are assigned to you)."""
        stops = field.route(key.technician_id)
        today = datetime.fromtimestamp(controller.clock(), UTC).date()
        return RouteView(technician_id=key.technician_id, day=today, stops=[StopModel.of(s) for s in stops])

    @router.post("/v1/field/orders/{order_id}/arrived", tags=["field"], responses=TECHNICIAN_ERRORS | ACTION_ERRORS)
    def arrived(order_id: OrderIdPath, key: Annotated[TechnicianKey, Depends(technician)]) -> WorkOrderView:
        """You reached the node (a repeat changes nothing)."""
        return _acted(controller, lambda: field.arrive(order_id, key.technician_id))

    @router.post("/v1/field/orders/{order_id}/done", tags=["field"], responses=TECHNICIAN_ERRORS | ACTION_ERRORS)
    def done(order_id: OrderIdPath, key: Annotated[TechnicianKey, Depends(technician)]) -> WorkOrderView:
        """You finished: the order awaits verification; the controller closes it once telemetry shows the fix."""
        return _acted(controller, lambda: field.done(order_id, key.technician_id))

    @router.get("/v1/work-orders", tags=["work orders"], responses=AUTH_ERRORS)
    def work_orders(
        _key: Annotated[OperatorKey, Depends(operator)],
        state: OrderState | None = None,
        node: Annotated[str | None, Query(max_length=64)] = None,
        technician: Annotated[str | None, Query(max_length=64)] = None,
    ) -> list[WorkOrderView]:
        """Every work order, newest first; filter by state, node or technician."""
        return [
            WorkOrderView.of(o, summary)
            for o, summary in field.orders()
            if (state is None or o.state is state)
            and (node is None or o.node_id == node)
            and (technician is None or o.technician_id == technician)
        ]

    @router.get("/v1/work-orders/{order_id}", tags=["work orders"], responses=AUTH_ERRORS | ACTION_ERRORS)
    def work_order(order_id: OrderIdPath, _key: Annotated[OperatorKey, Depends(operator)]) -> WorkOrderDetail:
        """One work order and every change it went through."""
        try:
            order = field.get(order_id)
        except UnknownWorkOrderError as exc:
            raise HTTPException(404, str(exc)) from None
        history = [
            OrderEventView(
                kind=e.kind, at=datetime.fromtimestamp(e.at, UTC), state=e.state, technician_id=e.technician_id
            )
            for e in controller.field_store.history(order_id)
        ]
        return WorkOrderDetail(**WorkOrderView.of(order, field.summary(order_id)).model_dump(), history=history)

    @router.post("/v1/work-orders/{order_id}/cancel", tags=["work orders"], responses=AUTH_ERRORS | ACTION_ERRORS)
    def cancel(order_id: OrderIdPath, _key: Annotated[OperatorKey, Depends(operator)]) -> WorkOrderView:
        """Withdraw an open order (e.g. the node is decommissioned); it leaves every route."""
        return _acted(controller, lambda: field.cancel(order_id))

    page = resources.files("controller.fieldwork").joinpath("static/field.html").read_text(encoding="utf-8")

    @router.get("/field", response_class=HTMLResponse, include_in_schema=False)
    def field_page() -> HTMLResponse:
        """The technicians' page."""
        return HTMLResponse(page, headers={"Cache-Control": "no-cache", "Content-Security-Policy": _CSP})

    return router


_CSP = "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data:"
"""The page loads nothing from anywhere else (its script and style are inline)."""


def _acted(controller: Controller, action: Callable[[], WorkOrder]) -> WorkOrderView:
    try:
        order = action()
    except UnknownWorkOrderError as exc:
        raise HTTPException(404, str(exc)) from None
    except NotAssignedError as exc:
        raise HTTPException(403, str(exc)) from None
    except SwapQueueError as exc:  # closed, or out of order
        raise HTTPException(409, str(exc)) from None
    return WorkOrderView.of(order, controller.field.summary(order.order_id))
