"""The few MQTT 5 packets the ingest session needs, encoded and parsed by hand, with no I/O (sans-IO).

Why by hand: at a telemetry flood, paho-mqtt spent over half of the controller's CPU framing packets (several
``recv`` calls and one ``send`` per message). This parser takes whatever the socket returned, yields every complete
packet in it, and acknowledgements go out many per ``send``. Only what a receive-only QoS 1 subscriber uses is
here: CONNECT, SUBSCRIBE, PUBLISH (in), PUBACK (out), PINGREQ and DISCONNECT. Everything else stays with paho-mqtt.
"""

import struct
from dataclasses import dataclass
from typing import Final

PINGREQ: Final = b"\xc0\x00"
DISCONNECT: Final = b"\xe0\x00"

_CONNACK, _PUBLISH, _SUBACK, _PINGRESP, _DISCONNECT = 2, 3, 9, 13, 14
_MAX_REMAINING: Final = 268_435_455


class ProtocolError(ConnectionError):
    """The broker sent bytes that are not MQTT 5 (the connection is dropped and made again)."""


@dataclass(frozen=True, slots=True)
class ConnAck:
    """The broker's answer to CONNECT."""

    session_present: bool
    reason: int


@dataclass(frozen=True, slots=True)
class SubAck:
    """The broker's answer to SUBSCRIBE: one reason code per filter (0-2 granted QoS, >= 0x80 refused)."""

    packet_id: int
    reasons: bytes


@dataclass(frozen=True, slots=True)
class Publish:
    """A delivered message; ``packet_id`` is None for QoS 0 (nothing to acknowledge)."""

    topic: str
    payload: bytes
    qos: int
    packet_id: int | None


@dataclass(frozen=True, slots=True)
class PingResp:
    """Answer to PINGREQ."""


@dataclass(frozen=True, slots=True)
class Disconnect:
    """The broker is closing the connection, with a reason code."""

    reason: int


Packet = ConnAck | SubAck | Publish | PingResp | Disconnect


def varint(value: int) -> bytes:
    """MQTT variable byte integer."""
    if not 0 <= value <= _MAX_REMAINING:
        raise ValueError(f"{value} does not fit a variable byte integer")
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _utf8(text: str) -> bytes:
    data = text.encode()
    return struct.pack("!H", len(data)) + data


def connect(
    client_id: str,
    *,
    keepalive_s: int,
    session_expiry_s: int,
    receive_maximum: int,
    clean_start: bool = False,
    username: str | None = None,
    password: str | None = None,
) -> bytes:
    """CONNECT (MQTT 5) with session expiry and receive maximum."""
    flags = (0x02 if clean_start else 0) | (0x80 if username is not None else 0) | (0x40 if password is not None else 0)
    properties = b"\x11" + struct.pack("!I", session_expiry_s) + b"\x21" + struct.pack("!H", receive_maximum)
    variable = _utf8("MQTT") + bytes([5, flags]) + struct.pack("!H", keepalive_s) + varint(len(properties)) + properties
    payload = _utf8(client_id)
    if username is not None:
        payload += _utf8(username)
    if password is not None:
        payload += _utf8(password)
    body = variable + payload
    return b"\x10" + varint(len(body)) + body


def subscribe(packet_id: int, filters: list[str], qos: int = 1) -> bytes:
    """SUBSCRIBE to ``filters`` at ``qos`` in one packet."""
    body = struct.pack("!H", packet_id) + b"\x00" + b"".join(_utf8(f) + bytes([qos]) for f in filters)
    return b"\x82" + varint(len(body)) + body


def pubacks(packet_ids: list[int]) -> bytes:
    """One PUBACK (success, no properties) per id, concatenated for a single send."""
    return b"".join(b"\x40\x02" + struct.pack("!H", pid) for pid in packet_ids)


class Parser:
    """Feed it bytes as they arrive; it returns every complete packet and keeps the rest."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[Packet]:
        """Parse as many packets as ``data`` (with what was left over) completes."""
        buf = self._buffer + data if self._buffer else data
        size = len(buf)
        pos = 0
        packets: list[Packet] = []
        while size - pos >= 2:
            first = buf[pos]
            length = 0
            shift = 0
            i = pos + 1
            while True:
                if i >= size:
                    self._buffer = buf[pos:]
                    return packets
                byte = buf[i]
                length |= (byte & 0x7F) << shift
                i += 1
                if byte < 0x80:
                    break
                shift += 7
                if shift > 21:
                    raise ProtocolError("remaining length longer than 4 bytes")
            end = i + length
            if end > size:
                break
            kind = first >> 4
            if kind == _PUBLISH:
                packets.append(_publish(first, buf, i, end))
            elif kind == _CONNACK:
                packets.append(ConnAck(bool(buf[i] & 1), buf[i + 1]))
            elif kind == _SUBACK:
                props, at = _read_varint(buf, i + 2)
                packets.append(SubAck(struct.unpack_from("!H", buf, i)[0], bytes(buf[at + props : end])))
            elif kind == _PINGRESP:
                packets.append(PingResp())
            elif kind == _DISCONNECT:
                packets.append(Disconnect(buf[i] if length else 0))
            pos = end
        self._buffer = buf[pos:]
        return packets


def _read_varint(buf: bytes, at: int) -> tuple[int, int]:
    value = 0
    shift = 0
    while True:
        byte = buf[at]
        value |= (byte & 0x7F) << shift
        at += 1
        if byte < 0x80:
            return value, at
        shift += 7
        if shift > 21:
            raise ProtocolError("variable byte integer longer than 4 bytes")


def _publish(first: int, buf: bytes, at: int, end: int) -> Publish:
    qos = (first >> 1) & 3
    topic_len = (buf[at] << 8) | buf[at + 1]
    at += 2
    topic = buf[at : at + topic_len].decode()
    at += topic_len
    packet_id = None
    if qos:
        packet_id = (buf[at] << 8) | buf[at + 1]
        at += 2
    props, at = _read_varint(buf, at)
    return Publish(topic, buf[at + props : end], qos, packet_id)
