"""The operators' alert API: ``/v1/alerts`` (list, acknowledge) and ``/v1/silences`` (create, list, expire).

Operator keys only (as ``/v1/nodes``). Every change is stored before the answer, and announced (MQTT channel,
operator webhooks) like any other transition.
"""

import secrets
from datetime import UTC, datetime
from typing import Annotated, Literal, Self

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from pydantic import BaseModel, Field, model_validator

from controller.alerts import AlertNotOpenError, AlertRecord, AlertState, Severity, Silence, UnknownAlertError
from controller.alerts.engine import UnknownSilenceError
from controller.alerts.model import Detail
from controller.api.models import ApiError
from controller.api.nodes import AUTH_ERRORS, operator_auth
from controller.service import Controller
from controller.store.operators import OperatorKey

AlertIdPath = Annotated[
    str, Path(pattern=r"^[a-z_]+:[A-Za-z0-9_.:@*-]{1,160}$", description="e.g. node_offline:node-7, rule:@site")
]
Matcher = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.*?\[\]-]{1,64}$")]


def _when(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


class AlertView(BaseModel):
    """One alert: its identity, lifecycle and current episode."""

    id: str
    rule: str
    severity: Severity
    state: AlertState
    site_id: str | None
    node_id: str | None
    compartment: str | None
    episode: int
    count: int
    summary: str
    value: float | None
    details: dict[str, Detail]
    pending_since: datetime
    firing_since: datetime | None
    resolved_at: datetime | None
    acked_by: str | None
    acked_at: datetime | None
    silenced: bool = Field(description="An active silence matches it: its transitions are not announced.")

    @classmethod
    def of(cls, r: AlertRecord, silenced: bool) -> Self:
        """The view of a record."""
        return cls(
            id=r.id,
            rule=r.rule,
            severity=r.severity,
            state=r.state,
            site_id=r.site_id,
            node_id=r.node_id,
            compartment=r.compartment,
            episode=r.episode,
            count=r.count,
            summary=r.summary,
            value=r.value,
            details=r.details,
            pending_since=datetime.fromtimestamp(r.pending_since, UTC),
            firing_since=_when(r.firing_since),
            resolved_at=_when(r.resolved_at),
            acked_by=r.acked_by,
            acked_at=_when(r.acked_at),
            silenced=silenced,
        )


class SilenceRequest(BaseModel):
    """Mute the alerts matching every matcher given (shell patterns: ``sim-00*``) for a while."""

    rule: Matcher | None = None
    node_id: Matcher | None = None
    site_id: Matcher | None = None
    compartment: Matcher | None = None
    comment: str = Field(min_length=1, max_length=256, description="Why (shown to other operators).")
    duration_s: float = Field(gt=0, le=90 * 86400, description="How long from now (or from starts_at).")
    starts_at: datetime | None = Field(default=None, description="Default: now.")

    @model_validator(mode="after")
    def _one_matcher(self) -> Self:
        if self.rule is None and self.node_id is None and self.site_id is None and self.compartment is None:
            raise ValueError("set at least one of rule, node_id, site_id, compartment")
        return self


class SilenceView(BaseModel):
    """A silence and whether it is in force now."""

    id: str
    created_by: str
    comment: str
    starts_at: datetime
    ends_at: datetime
    rule: str | None
    node_id: str | None
    site_id: str | None
    compartment: str | None
    active: bool

    @classmethod
    def of(cls, s: Silence, now: float) -> Self:
        """The view of a silence at ``now``."""
        return cls(
            id=s.id,
            created_by=s.created_by,
            comment=s.comment,
            starts_at=datetime.fromtimestamp(s.starts_at, UTC),
            ends_at=datetime.fromtimestamp(s.ends_at, UTC),
            rule=s.rule,
            node_id=s.node_id,
            site_id=s.site_id,
            compartment=s.compartment,
            active=s.active(now),
        )


def alerts_router(controller: Controller) -> APIRouter:
    """The ``/v1/alerts`` and ``/v1/silences`` routes bound to ``controller``."""
    operator = operator_auth(controller)
    service = controller.alerts.service
    router = APIRouter(tags=["alerts"], responses=AUTH_ERRORS)

    @router.get("/v1/alerts")
    def list_alerts(
        _key: Annotated[OperatorKey, Depends(operator)],
        state: Annotated[AlertState | Literal["open"] | None, Query(description="open: pending or firing")] = None,
        severity: Severity | None = None,
        site: str | None = None,
        node: str | None = None,
    ) -> list[AlertView]:
        """Alerts kept (open ones, and closed ones until pruned after a week), most severe and newest first."""
        found = [
            r
            for r in service.records()
            if (state is None or (r.open if state == "open" else r.state == state))
            and (severity is None or r.severity == severity)
            and (site is None or r.site_id == site)
            and (node is None or r.node_id == node)
        ]
        found.sort(key=lambda r: (not r.open, -r.severity.rank, -r.pending_since, r.id))
        return [AlertView.of(r, service.silenced(r.id)) for r in found]

    @router.post("/v1/alerts/{alert_id}/ack", responses={404: {"model": ApiError}, 409: {"model": ApiError}})
    def acknowledge(alert_id: AlertIdPath, key: Annotated[OperatorKey, Depends(operator)]) -> AlertView:
        """Acknowledge an open alert (the first acknowledgement of an announced alert is announced too)."""
        try:
            record = service.acknowledge(alert_id, key.operator)
        except UnknownAlertError as exc:
            raise HTTPException(404, str(exc)) from exc
        except AlertNotOpenError as exc:
            raise HTTPException(409, str(exc)) from exc
        return AlertView.of(record, service.silenced(alert_id))

    @router.post("/v1/silences", status_code=201)
    def create_silence(body: SilenceRequest, key: Annotated[OperatorKey, Depends(operator)]) -> SilenceView:
        """Mute matching alerts; their state still changes, and a raise still firing when it ends is announced."""
        starts = body.starts_at.timestamp() if body.starts_at else controller.clock()
        silence = Silence(
            id=secrets.token_hex(8),
            created_by=key.operator,
            comment=body.comment,
            starts_at=starts,
            ends_at=starts + body.duration_s,
            rule=body.rule,
            node_id=body.node_id,
            site_id=body.site_id,
            compartment=body.compartment,
        )
        service.add_silence(silence)
        return SilenceView.of(silence, controller.clock())

    @router.get("/v1/silences")
    def list_silences(_key: Annotated[OperatorKey, Depends(operator)]) -> list[SilenceView]:
        """Every silence: active, future, and ended ones until pruned."""
        now = controller.clock()
        return [SilenceView.of(s, now) for s in service.silences()]

    @router.delete("/v1/silences/{silence_id}", responses={404: {"model": ApiError}})
    def expire_silence(
        silence_id: Annotated[str, Path(pattern=r"^[0-9a-f]{16}$")], _key: Annotated[OperatorKey, Depends(operator)]
    ) -> SilenceView:
        """End a silence now; alerts it held back and still firing are announced."""
        try:
            silence = service.expire_silence(silence_id)
        except UnknownSilenceError as exc:
            raise HTTPException(404, f"no silence {silence_id!r}") from exc
        return SilenceView.of(silence, controller.clock())

    return router
