"""Named scalar types shared by every message of the contract.

Each type is a constrained ``str``/``int`` so that validation happens once, at the edge, and the JSON Schema
says exactly what is accepted.
"""

from typing import Annotated, Final

from pydantic import AwareDatetime, Field, StringConstraints

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
Timestamp = Annotated[AwareDatetime, Field(description="RFC 3339 instant with a UTC offset.")]
DurationMs = Annotated[int, Field(ge=0, le=3_600_000)]
