"""One error family for the contract: callers catch :class:`ContractError` as a whole."""

from enum import StrEnum


class ContractError(ValueError):
    """A topic or payload that is outside the contract."""


class TopicError(ContractError):
    """A topic string or node id outside the topic grammar."""


class RejectReason(StrEnum):
    """Why an inbound message was refused; used as a metric label and dead-letter tag."""

    UNKNOWN_TOPIC = "unknown_topic"
    OVERSIZED = "oversized"
    MALFORMED = "malformed"
    INVALID = "invalid"
    UNKNOWN_VERSION = "unknown_version"
    WRONG_NODE = "wrong_node"


class PayloadError(ContractError):
    """A payload that could not be accepted, with the reason it was refused."""

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail
