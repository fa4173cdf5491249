"""Field technicians' swap queue, pure core: work orders from alerts, fix verified from telemetry, routes, KPIs.

No I/O and no clock: the caller passes times and stores what the events carry. The OR-Tools sequencer lives in
:mod:`controller.swapqueue.ortools_sequencer` (imported on its own, so the rest loads without the solver).
"""

from controller.swapqueue.geo import GeoPoint, haversine_km
from controller.swapqueue.kpis import AlertRecord, FieldKpis, field_kpis
from controller.swapqueue.model import (
    DEFAULT_RULE_KINDS,
    ActionOrderError,
    AlertNotice,
    CancelReason,
    Event,
    EventKind,
    Evidence,
    NotAssignedError,
    OrderState,
    ProblemKind,
    Severity,
    SwapQueueError,
    TelemetrySample,
    UnknownWorkOrderError,
    VerifyPolicy,
    WorkOrder,
    WorkOrderClosedError,
)
from controller.swapqueue.orders import WorkOrderBook
from controller.swapqueue.priority import Ranked, rank, score
from controller.swapqueue.routes import (
    DayPlan,
    Route,
    RoutingError,
    Sequencer,
    Stop,
    Technician,
    plan_day,
    stops_from_ranked,
)

__all__ = [
    "DEFAULT_RULE_KINDS",
    "ActionOrderError",
    "AlertNotice",
    "AlertRecord",
    "CancelReason",
    "DayPlan",
    "Event",
    "EventKind",
    "Evidence",
    "FieldKpis",
    "GeoPoint",
    "NotAssignedError",
    "OrderState",
    "ProblemKind",
    "Ranked",
    "Route",
    "RoutingError",
    "Sequencer",
    "Severity",
    "Stop",
    "SwapQueueError",
    "Technician",
    "TelemetrySample",
    "UnknownWorkOrderError",
    "VerifyPolicy",
    "WorkOrder",
    "WorkOrderBook",
    "WorkOrderClosedError",
    "field_kpis",
    "haversine_km",
    "plan_day",
    "rank",
    "score",
    "stops_from_ranked",
]
