"""Delivery receipts: what the controller has durably stored of one node's boot (controller → node).

A node keeps each message it sent in its outbox until a receipt covers it: the broker's PUBACK only says the broker
holds the message (in memory, saved every ``autosave_interval``), a receipt says the controller will never need it
again (stored in InfluxDB, its effect durable, recognised as a duplicate, or kept as a dead letter). Ranges rather
than one watermark: controllers sharing a subscription each store a subset, a node's seqs have gaps (telemetry
dropped from a full outbox, statuses never in it) and the control and telemetry sessions store out of order.
"""

from typing import Annotated, Final, Self

from pydantic import Field, model_validator

from schemas.envelope import Versioned
from schemas.types import BootId, NodeId, Seq

MAX_RANGES: Final = 256
"""Most ranges one receipt carries (about 11 KiB at the largest seqs); a controller sends more in further receipts."""

SeqRange = Annotated[tuple[Seq, Seq], Field(description="[first_seq, last_seq], both included; first <= last.")]


class StoredReceipt(Versioned):
    """The seqs of ``node_id``'s boot ``boot_id`` the controller has stored: sorted, non-overlapping ranges."""

    node_id: NodeId
    boot_id: BootId
    ranges: list[SeqRange] = Field(min_length=1, max_length=MAX_RANGES)

    @model_validator(mode="after")
    def _sorted_disjoint(self) -> Self:
        previous = -1
        for first, last in self.ranges:
            if first > last:
                raise ValueError(f"range [{first}, {last}] ends before it starts")
            if first <= previous:
                raise ValueError(f"range [{first}, {last}] overlaps or precedes the one before (ending {previous})")
            previous = last
        return self
