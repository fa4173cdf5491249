"""Bodies of the courier HTTP API (the MQTT contract's models are reused where a node's message is returned)."""

from dataclasses import asdict
from datetime import datetime

from pydantic import BaseModel, Field

from controller.commands.opens import Opened
from controller.fleet.registry import NodeRecord, NodeState
from controller.store.operators import Maintenance
from schemas import CommandStatus, CompartmentInfo, DoorOutcome, ReservationStep, Telemetry
from schemas.ingest_codec import as_model


class MaintenanceView(BaseModel):
    """Why and since when a node is out of the reservation pool."""

    reason: str
    since: datetime
    set_by: str = Field(description="The operator who set it.")


class MaintenanceRequest(BaseModel):
    """Body of ``PUT /v1/nodes/{id}/maintenance``."""

    model_config = {"extra": "forbid"}

    reason: str = Field(min_length=1, max_length=500, description="Shown to other operators, e.g. the ticket.")


class NodeView(BaseModel):
    """A node as the controller sees it now."""

    node_id: str
    site: str | None
    state: NodeState
    boot_id: int
    firmware_version: str
    hardware_model: str
    telemetry_interval_s: float
    compartments: list[CompartmentInfo]
    last_seen: datetime = Field(description="When the controller last heard from the node.")
    telemetry: Telemetry | None = Field(description="The latest telemetry sample received, if any.")
    maintenance: MaintenanceView | None = Field(
        default=None, description="Set while an operator keeps the node out of the reservation pool."
    )

    @classmethod
    def of(cls, record: NodeRecord, now: float, maintenance: Maintenance | None = None) -> "NodeView":
        """Build the view of ``record`` at ``now``."""
        birth = record.birth
        return cls(
            node_id=record.node_id,
            site=birth.site,
            state=record.state(now),
            boot_id=record.boot_id,
            firmware_version=birth.firmware_version,
            hardware_model=birth.hardware_model,
            telemetry_interval_s=birth.telemetry_interval_s,
            compartments=list(birth.compartments),
            last_seen=datetime.fromtimestamp(record.last_seen).astimezone(),
            telemetry=None if record.telemetry is None else as_model(record.telemetry),
            maintenance=None if maintenance is None else MaintenanceView(**asdict(maintenance)),
        )


class OpenRequest(BaseModel):
    """Optional body of an open request."""

    model_config = {"extra": "forbid"}

    timeout_s: float | None = Field(
        default=None, ge=1, le=300, description="How long to wait for the node (default: the controller's setting)."
    )


class ReservationOpenRequest(BaseModel):
    """Body of a reservation open: which step it is for."""

    model_config = {"extra": "forbid"}

    step: ReservationStep = Field(
        description="`deposit` (the courier, while the reservation is held) or `pickup` (once deposited). A repeated "
        "request for a step gets the first answer; a deposit is never taken as the pickup."
    )
    timeout_s: float | None = Field(
        default=None, ge=1, le=300, description="How long to wait for the node (default: the controller's setting)."
    )


class OpenResponse(BaseModel):
    """The node's final answer to an open, with the physical outcome when the relay was driven."""

    command_id: str
    node_id: str
    compartment: str
    status: CommandStatus
    outcome: DoorOutcome | None
    detail: str | None
    round_trip_ms: float = Field(description="From this request's arrival to the node's answer.")

    @classmethod
    def of(cls, opened: Opened) -> "OpenResponse":
        """The answer to an open the node carried out."""
        return cls(
            command_id=opened.command_id,
            node_id=opened.node_id,
            compartment=opened.compartment,
            status=opened.result.status,
            outcome=opened.result.outcome,
            detail=opened.result.detail,
            round_trip_ms=round(opened.round_trip_s * 1000, 3),
        )


class ApiError(BaseModel):
    """Every 4xx/5xx body: what went wrong and, for opens, which command it concerns."""

    detail: str
    command_id: str | None = None
