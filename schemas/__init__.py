"""The lockerfleet MQTT contract: one model per message, the topic grammar, and the codec.

Where a message is defined: the module named after it (``schemas.telemetry`` …); how its topic is built:
``schemas.topics``; how its bytes are read and written: ``schemas.codec``.
"""

from schemas.codec import MAX_PAYLOAD_BYTES, Message, decode, decode_message, encode
from schemas.command import (
    CancelCommand,
    CancelUpdateCommand,
    Command,
    CommandBase,
    OpenCommand,
    ProvisionKeyCommand,
    ReservationStep,
    ReserveCommand,
    UpdateCommand,
)
from schemas.errors import ContractError, PayloadError, RejectReason, TopicError
from schemas.event import (
    Cause,
    CodeCause,
    CommandCause,
    DoorEvent,
    Event,
    KeypadEvent,
    LedgerEvent,
    LedgerTransition,
    NoCause,
)
from schemas.ota import FINAL_STATES, OtaEvent, OtaReason, OtaState
from schemas.release import RefusalReason, ReleaseManifest, ReleaseRefused, SignedRelease
from schemas.result import CommandResult, CommandStatus, DoorOutcome, DoorResult
from schemas.semver import SemVer
from schemas.status import CompartmentInfo, CompartmentSize, Status, StatusBirth, StatusDeath
from schemas.stored import MAX_RANGES, StoredReceipt
from schemas.telemetry import Battery, CompartmentReading, DoorState, LockState, PowerSource, Telemetry
from schemas.topics import Channel, Direction, NodeTopic, check_node_id, fleet_filter, parse_topic, topic
from schemas.types import (
    SCHEMA_VERSION,
    BootId,
    CommandId,
    CompartmentId,
    NodeId,
    ReservationId,
    RolloutId,
    Seq,
    SiteId,
)

__all__ = [
    "FINAL_STATES",
    "MAX_PAYLOAD_BYTES",
    "MAX_RANGES",
    "SCHEMA_VERSION",
    "Battery",
    "BootId",
    "CancelCommand",
    "CancelUpdateCommand",
    "Cause",
    "Channel",
    "CodeCause",
    "Command",
    "CommandBase",
    "CommandCause",
    "CommandId",
    "CommandResult",
    "CommandStatus",
    "CompartmentId",
    "CompartmentInfo",
    "CompartmentReading",
    "CompartmentSize",
    "ContractError",
    "Direction",
    "DoorEvent",
    "DoorOutcome",
    "DoorResult",
    "DoorState",
    "Event",
    "KeypadEvent",
    "LedgerEvent",
    "LedgerTransition",
    "LockState",
    "Message",
    "NoCause",
    "NodeId",
    "NodeTopic",
    "OpenCommand",
    "OtaEvent",
    "OtaReason",
    "OtaState",
    "PayloadError",
    "PowerSource",
    "ProvisionKeyCommand",
    "RefusalReason",
    "RejectReason",
    "ReleaseManifest",
    "ReleaseRefused",
    "ReservationId",
    "ReservationStep",
    "ReserveCommand",
    "RolloutId",
    "SemVer",
    "Seq",
    "SignedRelease",
    "SiteId",
    "Status",
    "StatusBirth",
    "StatusDeath",
    "StoredReceipt",
    "Telemetry",
    "TopicError",
    "UpdateCommand",
    "check_node_id",
    "decode",
    "decode_message",
    "encode",
    "fleet_filter",
    "parse_topic",
    "topic",
]
