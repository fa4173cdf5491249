"""Node status: the retained birth published on connect, and the death used as MQTT last will."""

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field

from schemas.envelope import ContractModel, NodeEnvelope
from schemas.types import CompartmentId, ShortText, SiteId


class CompartmentSize(StrEnum):
    """Compartment size classes, smallest first."""

    S = "S"
    M = "M"
    L = "L"
    XL = "XL"


class CompartmentInfo(ContractModel):
    """One compartment as the node describes it at birth."""

    id: CompartmentId
    size: CompartmentSize


class StatusBirth(NodeEnvelope):
    """Retained ``online`` status: what the node is and how often it reports."""

    state: Literal["online"] = "online"
    firmware_version: ShortText
    hardware_model: ShortText
    telemetry_interval_s: float = Field(gt=0, le=86_400)
    compartments: list[CompartmentInfo] = Field(min_length=1, max_length=256)
    site: SiteId | None = Field(default=None, description="The site the locker stands at (reservations pick by site).")


class StatusDeath(NodeEnvelope):
    """Retained ``offline`` status, registered as last will; its boot id orders it against births."""

    state: Literal["offline"] = "offline"


Status = Annotated[StatusBirth | StatusDeath, Field(discriminator="state")]
"""A status message is a birth or a death, told apart by ``state``."""
