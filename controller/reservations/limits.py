"""What one courier partner may ask for: the priorities its key was granted, how far ahead of the arrival a hold
may start, and how many compartments it may tie up at one site.

Pure: the service passes the key's grants, the time and the counts, and turns a refusal into its HTTP answer
(403, 422 and 409 respectively). Together these keep one partner from holding a whole site for weeks.
"""

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from controller.reservations.contention import Priority

DEFAULT_PRIORITIES = frozenset({Priority.NORMAL})
"""What a key may use unless granted more (``lockerfleet keys --priorities``)."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-partner bounds on reservations (the controller's ``--hold-lead-max-h`` and ``--site-quota-share``)."""

    hold_lead_max: timedelta = timedelta(days=2)
    """A request whose expected arrival is further ahead is refused: a hold starts at most this long before it."""
    site_quota_share: float = 0.5
    """Unless the key sets its own quota, a partner may hold at most this share of a site's compartments."""


def priority_refusal(priority: Priority, granted: frozenset[Priority]) -> str | None:
    """Why a key granted ``granted`` may not ask for ``priority``, or None if it may."""
    if priority in granted:
        return None
    allowed = ", ".join(str(int(p)) for p in sorted(granted)) or "none"
    return (
        f"this key may not request priority {int(priority)} ({priority.name.lower()}); it may use: {allowed}. "
        "Ask the operator for a key issued with --priorities including it"
    )


def arrival_refusal(expected_arrival: datetime, now: datetime, lead_max: timedelta) -> str | None:
    """Why a hold for ``expected_arrival`` may not start at ``now``, or None if it may."""
    if expected_arrival <= now + lead_max:
        return None
    hours = lead_max.total_seconds() / 3600
    return (
        f"expected_arrival {expected_arrival.isoformat()} is more than {hours:g} h ahead: a compartment is held "
        f"from the request until the arrival, so at most {hours:g} h before it; "
        f"request again from {(expected_arrival - lead_max).isoformat()}"
    )


def site_quota(capacity: int, share: float, per_key: int | None) -> int:
    """How many reservations one partner may keep at a site of ``capacity`` compartments (at least one)."""
    if per_key is not None:
        return per_key
    return max(1, math.floor(capacity * share + 1e-9))


def quota_refusal(partner: str, site_id: str, holding: int, quota: int) -> str | None:
    """Why ``partner``, already holding ``holding`` reservations at ``site_id``, may not get another, or None."""
    if holding < quota:
        return None
    return (
        f"partner {partner} already has {holding} reservations pending, held or waitlisted at {site_id}; "
        f"its quota is {quota} per site. A slot frees when a parcel is deposited or a reservation is cancelled "
        "or expires"
    )
