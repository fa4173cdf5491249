"""Named scalar types shared by every message of the contract.

Each type is a constrained ``str``/``int`` so that validation happens once, at the edge, and the JSON Schema
says exactly what is accepted.
"""

from datetime import UTC, datetime
from typing import Annotated, Final

from pydantic import AfterValidator, AwareDatetime, Field, StringConstraints

SCHEMA_VERSION: Final = 1
"""The contract version this build speaks; every message carries it as ``schema_version``."""

NODE_ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
"""A node id fills exactly one MQTT topic level: no ``/``, ``+``, ``#``, ``$`` prefix, whitespace or empty."""

NodeId = Annotated[str, StringConstraints(pattern=NODE_ID_PATTERN)]
CompartmentId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,15}$")]
CommandId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")]
ReservationId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")]
RolloutId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")]
SiteId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Detail = Annotated[str, StringConstraints(max_length=256)]

BootId = Annotated[int, Field(ge=0, lt=2**63, description="Grows by one every time the agent starts.")]
Seq = Annotated[int, Field(ge=0, lt=2**63, description="Per-boot monotonic message counter, from 0.")]
EARLIEST: Final = datetime(1677, 9, 22, tzinfo=UTC)
LATEST: Final = datetime(2262, 4, 11, tzinfo=UTC)
"""Instants from :data:`EARLIEST` until :data:`LATEST` are accepted: InfluxDB stores time as signed 64-bit
nanoseconds since 1970, so a message stamped outside would be taken, acted on, and then lost at the write."""


def storable(value: datetime) -> datetime:
    if not EARLIEST <= value < LATEST:
        raise ValueError(
            f"instant {value.isoformat()} is outside {EARLIEST:%Y-%m-%d} .. {LATEST:%Y-%m-%d}, the range InfluxDB "
            "stores; check the sender's clock"
        )
    return value


Timestamp = Annotated[
    AwareDatetime,
    AfterValidator(storable),
    Field(description="RFC 3339 instant with a UTC offset, from 1677-09-22 until 2262-04-11 (what InfluxDB stores)."),
]
DurationMs = Annotated[int, Field(ge=0, le=3_600_000)]
