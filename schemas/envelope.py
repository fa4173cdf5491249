"""Base models: strict configuration and the envelope every node message carries."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator

from schemas.types import SCHEMA_VERSION, BootId, NodeId, Seq, Timestamp


class ContractModel(BaseModel):
    """Strict, immutable model: unknown fields, wrong types and oversized strings are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False, str_max_length=256)


class Versioned(ContractModel):
    """Carries the contract version and refuses a version this build does not speak."""

    schema_version: Literal[1] = SCHEMA_VERSION

    @field_validator("schema_version", mode="before")
    @classmethod
    def _known_version(cls, value: object) -> object:
        if value != SCHEMA_VERSION:
            raise ValueError(
                f"unsupported schema_version {value!r}: this build speaks version {SCHEMA_VERSION}; "
                "upgrade the receiver or downgrade the sender"
            )
        return value


class NodeEnvelope(Versioned):
    """Fields on every message a node sends: who, which boot, which message of that boot, and when."""

    node_id: NodeId
    boot_id: BootId
    seq: Seq
    ts: Timestamp
    replayed: bool = False
    """True when the message was buffered while offline and is delivered late from the outbox."""
