"""Offline codes: how a deposit or pickup code is derived, so the controller issues it and a node checks it alone.

A code is an 8-digit truncated HMAC-SHA256 (RFC 4226 dynamic truncation) over what it unlocks: purpose, node,
compartment, reservation and validity window. The key is the node's own (:func:`node_key`), derived by the
controller from its secret and provisioned to that node only: a key read out of one locker opens nothing elsewhere.
"""

import hashlib
import hmac
from datetime import datetime
from enum import StrEnum
from typing import Final

CODE_DIGITS: Final = 8


class CodePurpose(StrEnum):
    """What a code lets its holder do."""

    DEPOSIT = "deposit"
    PICKUP = "pickup"


def node_key(controller_secret: bytes, node_id: str) -> bytes:
    """The key of one node, derived from the controller's secret (never shared between nodes)."""
    return hmac.new(controller_secret, b"lockerfleet/node-key/v1/" + node_id.encode(), hashlib.sha256).digest()


def offline_code(
    key: bytes,
    purpose: CodePurpose,
    node_id: str,
    compartment: str,
    reservation_id: str,
    not_before: datetime,
    not_after: datetime,
) -> str:
    """The code that unlocks ``compartment`` for ``purpose`` between ``not_before`` and ``not_after``."""
    if not_after <= not_before:
        raise ValueError("a code's window must end after it starts")
    window = f"{int(not_before.timestamp())}-{int(not_after.timestamp())}"
    message = "|".join(("v1", purpose.value, node_id, compartment, reservation_id, window)).encode()
    digest = hmac.new(key, message, hashlib.sha256).digest()
    offset = digest[-1] & 0x0F
    value = int.from_bytes(digest[offset : offset + 4], "big") & 0x7FFF_FFFF
    return f"{value % 10**CODE_DIGITS:0{CODE_DIGITS}d}"
