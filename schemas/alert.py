"""Alert notifications the controller publishes (MQTT channel and operator webhooks carry the same JSON).

One message per transition of an alert's episode: ``raised``, ``escalated`` (severity went up), ``acknowledged``,
``resolved``. ``delivery_key`` (``<alert id>#<episode>:<transition>``, escalations add the severity) is unique per
announcement: a consumer that sees a key again (a redelivery after a lost acknowledgement) ignores it.
"""

from typing import Annotated, Final, Literal

from pydantic import Field, StringConstraints

from schemas.envelope import Versioned
from schemas.types import CompartmentId, NodeId, SiteId, Timestamp

MAX_DETAIL_ITEMS: Final = 100
"""Longest list in ``details`` (a site alert's node list is cut here; its ``offline`` count stays whole)."""

AlertId = Annotated[str, StringConstraints(pattern=r"^[a-z_]+:[A-Za-z0-9_.:@*-]{1,160}$")]
"""``rule:node``, ``rule:node:compartment``, ``rule:@site`` or ``rule:*`` (fleet-wide)."""
RuleId = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z_]{0,63}$")]
DetailValue = str | int | float | bool | None | Annotated[list[str], Field(max_length=MAX_DETAIL_ITEMS)]


class AlertNotice(Versioned):
    """One announcement of an alert's transition."""

    delivery_key: Annotated[str, StringConstraints(max_length=200)] = Field(
        description="Unique per announcement: ignore a key seen before."
    )
    alert_id: AlertId
    episode: int = Field(ge=1, description="Grows each time the alert starts again after it resolved.")
    transition: Literal["raised", "escalated", "acknowledged", "resolved"]
    at: Timestamp = Field(description="When the controller decided the transition.")
    rule: RuleId
    severity: Literal["info", "warning", "critical"]
    site_id: SiteId | None = None
    node_id: NodeId | None = None
    compartment: CompartmentId | None = None
    summary: Annotated[str, StringConstraints(max_length=256)] = ""
    count: int = Field(ge=0, description="Occurrences in this episode (events, or raise edges of a condition).")
    value: float | None = Field(default=None, description="The rule's measured value (e.g. hours to empty).")
    details: dict[Annotated[str, StringConstraints(max_length=64)], DetailValue] = Field(
        default_factory=dict, max_length=32
    )
    acked_by: Annotated[str, StringConstraints(max_length=64)] | None = None
    time_to_ack_s: float | None = Field(default=None, ge=0, description="Firing to acknowledgement, when known.")
    time_to_resolve_s: float | None = Field(default=None, ge=0, description="Firing to resolution, when known.")
