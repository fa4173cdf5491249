"""The operators' node API: ``/v1/nodes`` (fleet state, maintenance) and the direct open of a compartment.

Every route needs an operator key (``Authorization: Bearer lfop_…``, issued by ``lockerfleet operator-key``);
a courier partner's key gets 403. Couriers open through their reservations instead.
"""

import logging
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Body, Depends, HTTPException, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from controller.api.errors import OPEN_ERRORS
from controller.api.guard import authenticated
from controller.api.models import ApiError, MaintenanceRequest, NodeView, OpenRequest, OpenResponse
from controller.fleet.registry import NodeState
from controller.service import Controller
from controller.store.operators import OperatorKey
from controller.store.reservations import ApiKey
from schemas.types import NODE_ID_PATTERN

log = logging.getLogger(__name__)

NodeIdPath = Annotated[str, Path(pattern=NODE_ID_PATTERN, description="The node's id, as in its topics.")]
CompartmentPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,15}$", description="Compartment id.")]

_operator_bearer = HTTPBearer(
    auto_error=False, scheme_name="OperatorKey", description="An operator's API key: `Authorization: Bearer lfop_…`."
)
_CHALLENGE = {"WWW-Authenticate": "Bearer"}
AUTH_ERRORS: dict[int | str, dict[str, object]] = {
    401: {"model": ApiError, "description": "No operator key, or an unknown or revoked one."},
    403: {"model": ApiError, "description": "A courier partner's key: partners open through their reservations."},
}


def operator_auth(controller: Controller) -> Callable[..., OperatorKey]:
    """The dependency every operator route takes: the caller's operator key, or 401 / 403."""

    def operator(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_operator_bearer)]
    ) -> OperatorKey:
        if credentials is None:
            raise HTTPException(401, "missing operator key: send Authorization: Bearer <key>", _CHALLENGE)
        key = authenticated(request) or controller.find_key(credentials.credentials)
        if isinstance(key, OperatorKey):
            return key
        if isinstance(key, ApiKey):
            raise HTTPException(403, "a courier partner key cannot use the operator API; open through /v1/reservations")
        raise HTTPException(401, "unknown or revoked operator key", _CHALLENGE)

    return operator


def nodes_router(controller: Controller) -> APIRouter:
    """The ``/v1/nodes`` routes bound to ``controller``."""
    operator = operator_auth(controller)
    router = APIRouter(prefix="/v1/nodes", tags=["nodes"], responses=AUTH_ERRORS)

    @router.get("")
    def list_nodes(_key: Annotated[OperatorKey, Depends(operator)], state: NodeState | None = None) -> list[NodeView]:
        """Every known node, optionally only those in one state."""
        now = controller.clock()
        views = [NodeView.of(r, now, controller.maintenance.get(r.node_id)) for r in controller.fleet.records()]
        return [v for v in views if state is None or v.state == state]

    @router.get("/{node_id}", responses={404: {"model": ApiError}})
    def get_node(node_id: NodeIdPath, _key: Annotated[OperatorKey, Depends(operator)]) -> NodeView:
        """One node with its state and latest telemetry."""
        return node_view(controller, node_id)

    @router.put("/{node_id}/maintenance", responses={404: {"model": ApiError}})
    def start_maintenance(
        node_id: NodeIdPath, body: MaintenanceRequest, key: Annotated[OperatorKey, Depends(operator)]
    ) -> NodeView:
        """Take the node out of the reservation pool (its current reservations carry on; direct opens still work)."""
        node_view(controller, node_id)
        controller.set_maintenance(node_id, body.reason, key.operator)
        return node_view(controller, node_id)

    @router.delete("/{node_id}/maintenance", responses={404: {"model": ApiError}})
    def end_maintenance(node_id: NodeIdPath, key: Annotated[OperatorKey, Depends(operator)]) -> NodeView:
        """Return the node to the reservation pool; requests waiting for its site may get it at once."""
        node_view(controller, node_id)
        if not controller.clear_maintenance(node_id, key.operator):
            raise HTTPException(404, f"node {node_id!r} is not under maintenance")
        return node_view(controller, node_id)

    @router.post(
        "/{node_id}/compartments/{compartment}/open",
        responses=OPEN_ERRORS,
    )
    async def open_compartment(
        node_id: NodeIdPath,
        compartment: CompartmentPath,
        key: Annotated[OperatorKey, Depends(operator)],
        request: Annotated[OpenRequest | None, Body()] = None,
    ) -> OpenResponse:
        """Unlock one compartment and return what the door did (``opened``, ``already_open`` or ``jammed``).

        The node refuses to open a compartment a reservation holds: that one opens through the reservation.
        """
        log.info("operator open node=%s compartment=%s operator=%s", node_id, compartment, key.operator)
        opened = await controller.opens.open(
            node_id,
            compartment,
            requested_by=f"operator:{key.operator}",
            timeout_s=request.timeout_s if request else None,
        )
        return OpenResponse.of(opened)

    return router


def node_view(controller: Controller, node_id: str) -> NodeView:
    """The node's view now, or 404."""
    record = controller.fleet.get(node_id)
    if record is None:
        raise HTTPException(404, f"unknown node {node_id!r}: it never sent a birth to this controller")
    return NodeView.of(record, controller.clock(), controller.maintenance.get(node_id))
