"""Contention policy: which compartment a reservation request gets, or why none, decided one request at a time.

Pure: no I/O; the caller passes the fleet as it is now and the time. The controller runs every request for a
site through :meth:`Allocator.request` under one lock, so when many race for the last compartments exactly as
many succeed as there is capacity. A grant is ``pending`` until the node confirms the hold (the allocator keeps it
out of the free pool meanwhile); the rest are refused with the nearest sites that still have room, or wait in a
first-come-first-served queue per priority until their expiry.
"""

import math
from collections import deque
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum

from schemas import CompartmentSize

_SIZES = list(CompartmentSize)


class Priority(IntEnum):
    """Request classes; a higher class may use capacity kept back from lower ones."""

    NORMAL = 0
    PEAK_RETURN = 1
    PERISHABLE = 2


@dataclass(frozen=True, slots=True)
class Site:
    """A group of nodes at one place."""

    site_id: str
    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class Compartment:
    """One compartment as the allocator sees it."""

    node_id: str
    compartment_id: str
    size: CompartmentSize
    free: bool
    """Free in the node's last reported ledger (not held, occupied or out of service)."""
    uses: int = 0
    """How many reservations it has served: the least used one is picked first, spreading wear."""


@dataclass(frozen=True, slots=True)
class NodeCondition:
    """What makes a node eligible for new reservations."""

    node_id: str
    site_id: str
    online: bool
    """Online and not stale."""
    battery_pct: float
    maintenance: bool = False
    updating: bool = False


@dataclass(frozen=True, slots=True)
class Policy:
    """Tunables of the allocator."""

    battery_floor_pct: float = 20.0
    kept_back: dict[Priority, int] = field(default_factory=lambda: {Priority.NORMAL: 2, Priority.PEAK_RETURN: 1})
    """Per site, how many eligible compartments a request of each class must leave free (for higher classes)."""
    nearest_sites: int = 3


@dataclass(frozen=True, slots=True)
class Request:
    """A courier partner's reservation request."""

    request_id: str
    site_id: str
    size: CompartmentSize
    priority: Priority = Priority.NORMAL
    wait_until: float | None = None
    """Join the waitlist until then if nothing is free; None: refuse at once."""


class Verdict(StrEnum):
    """How a request ended (for now)."""

    GRANTED = "granted"
    WAITLISTED = "waitlisted"
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class Decision:
    """The allocator's answer: a compartment, a waitlist place, or the nearest sites with room."""

    verdict: Verdict
    request: Request
    node_id: str | None = None
    compartment_id: str | None = None
    position: int | None = None
    alternatives: tuple[str, ...] = ()
    reason: str = ""


@dataclass
class Allocator:
    """Grants compartments; remembers what it granted and not yet saw confirmed, and who waits."""

    sites: dict[str, Site]
    policy: Policy = field(default_factory=Policy)
    pending: set[tuple[str, str]] = field(default_factory=set)
    waiting: dict[tuple[str, Priority], deque[Request]] = field(default_factory=dict)

    def request(
        self, request: Request, nodes: list[NodeCondition], compartments: list[Compartment], now: float
    ) -> Decision:
        """Decide one request against the fleet as it is now."""
        if request.site_id not in self.sites:
            return Decision(Verdict.REFUSED, request, reason=f"unknown site {request.site_id!r}")
        self._drop_expired(now)
        if self.waiting.get((request.site_id, request.priority)):
            return self._wait_or_refuse(request, nodes, compartments, now, "earlier requests of this priority wait")
        found = self._pick(request, nodes, compartments)
        if found is not None:
            self.pending.add((found.node_id, found.compartment_id))
            return Decision(Verdict.GRANTED, request, found.node_id, found.compartment_id)
        return self._wait_or_refuse(request, nodes, compartments, now, "no eligible compartment of that size")

    def confirmed(self, node_id: str, compartment_id: str) -> None:
        """The node reported the hold (or refused it): the grant is no longer pending."""
        self.pending.discard((node_id, compartment_id))

    def next_waiting(
        self, site_id: str, nodes: list[NodeCondition], compartments: list[Compartment], now: float
    ) -> Decision | None:
        """Capacity may have freed up at ``site_id``: grant the first waiting request that now fits, if any."""
        self._drop_expired(now)
        for priority in sorted(Priority, reverse=True):
            queue = self.waiting.get((site_id, priority))
            if not queue:
                continue
            found = self._pick(queue[0], nodes, compartments)
            if found is not None:
                request = queue.popleft()
                self.pending.add((found.node_id, found.compartment_id))
                return Decision(Verdict.GRANTED, request, found.node_id, found.compartment_id)
            return None  # the head of the highest queue waits; nobody overtakes it
        return None

    def _eligible(self, site_id: str, nodes: list[NodeCondition], compartments: list[Compartment]) -> list[Compartment]:
        ok = {
            n.node_id
            for n in nodes
            if n.site_id == site_id
            and n.online
            and not n.maintenance
            and not n.updating
            and n.battery_pct >= self.policy.battery_floor_pct
        }
        return [
            c for c in compartments if c.node_id in ok and c.free and (c.node_id, c.compartment_id) not in self.pending
        ]

    def _pick(
        self, request: Request, nodes: list[NodeCondition], compartments: list[Compartment]
    ) -> Compartment | None:
        eligible = self._eligible(request.site_id, nodes, compartments)
        if len(eligible) <= self.policy.kept_back.get(request.priority, 0):
            return None
        fitting = [c for c in eligible if _SIZES.index(c.size) >= _SIZES.index(request.size)]
        if not fitting:
            return None
        return min(fitting, key=lambda c: (_SIZES.index(c.size), c.uses, c.node_id, c.compartment_id))

    def _wait_or_refuse(
        self, request: Request, nodes: list[NodeCondition], compartments: list[Compartment], now: float, reason: str
    ) -> Decision:
        if request.wait_until is not None and request.wait_until > now:
            queue = self.waiting.setdefault((request.site_id, request.priority), deque())
            queue.append(request)
            return Decision(Verdict.WAITLISTED, request, position=len(queue), reason=reason)
        return Decision(
            Verdict.REFUSED, request, alternatives=self._nearest_with_room(request, nodes, compartments), reason=reason
        )

    def _nearest_with_room(
        self, request: Request, nodes: list[NodeCondition], compartments: list[Compartment]
    ) -> tuple[str, ...]:
        origin = self.sites[request.site_id]
        with_room = [
            site
            for site in self.sites.values()
            if site.site_id != request.site_id
            and self._pick(Request("probe", site.site_id, request.size, request.priority), nodes, compartments)
        ]
        with_room.sort(key=lambda s: _km(origin, s))
        return tuple(s.site_id for s in with_room[: self.policy.nearest_sites])

    def _drop_expired(self, now: float) -> None:
        for key, queue in self.waiting.items():
            self.waiting[key] = deque(r for r in queue if r.wait_until is None or r.wait_until > now)


def _km(a: Site, b: Site) -> float:
    """Great-circle distance (haversine)."""
    lat1, lon1, lat2, lon2 = map(math.radians, (a.lat, a.lon, b.lat, b.lon))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * 6371.0 * math.asin(math.sqrt(h))
