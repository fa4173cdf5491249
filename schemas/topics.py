"""The topic grammar: the only place that builds or parses an MQTT topic string.

Every node's traffic lives under ``lockers/v1/<node>/``, one level per node, so a broker ACL such as
``pattern readwrite lockers/v1/%u/#`` confines a node to its own subtree. The controller's alert notifications
live under their own root, ``lockerfleet/v1/alerts/<site>``, which no locker may write.
"""

import re
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Final

from schemas.errors import TopicError
from schemas.types import NODE_ID_PATTERN

ROOT: Final = "lockers/v1"
ALERTS_ROOT: Final = "lockerfleet/v1/alerts"
FLEET_SCOPE: Final = "_fleet"
"""The alert topic level of alerts without a site (fleet-wide, or a node with no site); no site id starts with _."""
_NODE_ID = re.compile(NODE_ID_PATTERN)


class Direction(StrEnum):
    """Who publishes on a channel."""

    UP = "node → controller"
    DOWN = "controller → node"


class Channel(StrEnum):
    """The last topic level: which kind of message travels there."""

    STATUS = "status"
    TELEMETRY = "telemetry"
    EVENT = "event"
    COMMAND = "command"
    RESULT = "result"
    STORED = "stored"

    @property
    def direction(self) -> Direction:
        """Who publishes here."""
        return Direction.DOWN if self in (Channel.COMMAND, Channel.STORED) else Direction.UP

    @property
    def qos(self) -> int:
        """QoS every publisher uses on this channel."""
        return 1

    @property
    def retained(self) -> bool:
        """Only status is retained; commands never are (they expire instead), nor are receipts."""
        return self is Channel.STATUS


@dataclass(frozen=True, slots=True)
class NodeTopic:
    """A parsed topic: which node, which channel."""

    node_id: str
    channel: Channel


def check_node_id(node_id: str) -> str:
    """Return ``node_id`` if it can fill one topic level, else raise :class:`TopicError`."""
    if not _NODE_ID.fullmatch(node_id):  # fullmatch: `$` would accept a trailing newline
        raise TopicError(
            f"invalid node id {node_id!r}: use 1-64 characters from A-Z a-z 0-9 _ . - "
            "starting with a letter or digit (no '/', '+', '#', spaces or empty)"
        )
    return node_id


def topic(node_id: str, channel: Channel) -> str:
    """Topic of one node's channel, e.g. ``lockers/v1/node-7/telemetry``."""
    return f"{ROOT}/{check_node_id(node_id)}/{channel.value}"


def fleet_filter(channel: Channel, share_group: str | None = None) -> str:
    """Filter for one channel of every node; with ``share_group``, an MQTT 5 shared subscription."""
    base = f"{ROOT}/+/{channel.value}"
    if share_group is None:
        return base
    if not share_group or any(c in share_group for c in "/+#"):
        raise TopicError(f"invalid share group {share_group!r}: one topic level without '/', '+' or '#'")
    return f"$share/{share_group}/{base}"


@lru_cache(maxsize=65536)
def parse_topic(value: str) -> NodeTopic:
    """Inverse of :func:`topic`; raises :class:`TopicError` for anything outside the grammar.

    Cached: a fleet's topics repeat with every message (errors are not cached and are raised again).
    """
    parts = value.split("/")
    if len(parts) != 4 or f"{parts[0]}/{parts[1]}" != ROOT:
        raise TopicError(f"topic {value!r} is not of the form {ROOT}/<node>/<channel>")
    try:
        channel = Channel(parts[3])
    except ValueError:
        known = ", ".join(c.value for c in Channel)
        raise TopicError(f"topic {value!r} has unknown channel {parts[3]!r}; known: {known}") from None
    return NodeTopic(check_node_id(parts[2]), channel)


def alert_topic(site_id: str | None) -> str:
    """Topic of the alert notifications about one site's nodes, e.g. ``lockerfleet/v1/alerts/centre``.

    Alerts without a site go to ``lockerfleet/v1/alerts/_fleet``; subscribe to ``lockerfleet/v1/alerts/#`` for all.
    """
    if site_id is None:
        return f"{ALERTS_ROOT}/{FLEET_SCOPE}"
    if not _NODE_ID.fullmatch(site_id):  # site ids follow the node id grammar (schemas.types.SiteId)
        raise TopicError(f"invalid site id {site_id!r}: one topic level of A-Z a-z 0-9 _ . -")
    return f"{ALERTS_ROOT}/{site_id}"


def alerts_filter() -> str:
    """Filter for every alert notification."""
    return f"{ALERTS_ROOT}/#"
