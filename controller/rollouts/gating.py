"""Controller-side gates: whether a node may be sent its update now, and if not, the reason it is deferred.

The controller checks what it knows from the fleet snapshot and the site's maintenance window, and the rollout engine
caps how many nodes of one site update at once. What only the node knows (a door open, a command in flight, a held
reservation due soon, the battery below its floor) is checked by the agent, which answers ``deferred`` with a reason.
"""

from datetime import datetime, time
from enum import StrEnum
from typing import Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, model_validator

from controller.rollouts.targeting import NodeFacts


class DeferReason(StrEnum):
    """Why the controller holds a node back (node-side reasons come from the agent as free text)."""

    NOT_IN_FLEET = "not_in_fleet"
    """The node is missing from the fleet snapshot."""
    OFFLINE = "offline"
    MAINTENANCE = "maintenance"
    """An operator took the node out of service."""
    UPDATING_ELSEWHERE = "updating_elsewhere"
    """Another rollout is updating the node."""
    OUTSIDE_WINDOW = "outside_maintenance_window"
    """The site has a maintenance window and now is outside it."""


class MaintenanceWindow(BaseModel):
    """A daily window in the site's local time, e.g. ``02:00-05:00`` in ``Europe/Berlin``; may cross midnight."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    daily: str = Field(pattern=r"^\d{2}:\d{2}-\d{2}:\d{2}$", examples=["02:00-05:00", "22:00-04:00"])
    tz: str = Field(default="UTC", description="IANA time zone of the site.", examples=["Europe/Berlin"])

    @model_validator(mode="after")
    def _valid(self) -> Self:
        start, end = self.bounds()
        if start == end:
            raise ValueError(f"{self.daily}: a window must not start and end at the same time")
        try:
            ZoneInfo(self.tz)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ValueError(f"{self.tz!r} is not an IANA time zone (e.g. Europe/Berlin)") from error
        return self

    def bounds(self) -> tuple[time, time]:
        """Start and end as local times of day."""
        first, second = self.daily.split("-")
        try:
            return time.fromisoformat(first), time.fromisoformat(second)
        except ValueError as error:
            raise ValueError(f"{self.daily}: times are HH:MM between 00:00 and 23:59") from error

    def contains(self, now: datetime) -> bool:
        """Whether the aware instant ``now`` falls inside the window (start inclusive, end exclusive)."""
        start, end = self.bounds()
        local = now.astimezone(ZoneInfo(self.tz)).time()
        if start < end:
            return start <= local < end
        return local >= start or local < end


def controller_defer_reason(node: NodeFacts | None, window_open: bool) -> DeferReason | None:
    """Why ``node`` must wait (None when it may be sent its update); ``window_open`` is its site's window state."""
    if node is None:
        return DeferReason.NOT_IN_FLEET
    if node.maintenance:
        return DeferReason.MAINTENANCE
    if not node.online:
        return DeferReason.OFFLINE
    if node.updating:
        return DeferReason.UPDATING_ELSEWHERE
    if not window_open:
        return DeferReason.OUTSIDE_WINDOW
    return None
