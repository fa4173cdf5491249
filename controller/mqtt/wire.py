"""The few MQTT 5 packets the ingest session needs, encoded and parsed by hand, with no I/O (sans-IO).

Why by hand: at a telemetry flood, paho-mqtt spent over half of the controller's CPU framing packets (several
``recv`` calls and one ``send`` per message). This parser takes whatever the socket returned, yields every complete
packet in it, and acknowledgements go out many per ``send``. Only what a receive-only QoS 1 subscriber uses is
here: CONNECT, SUBSCRIBE, PUBLISH (in), PUBACK (out), PINGREQ and DISCONNECT. Everything else stays with paho-mqtt.

The parser trusts nothing it reads: every field is checked against the end of its packet, a packet larger than
the Maximum Packet Size sent in CONNECT is refused before it is buffered, and anything that is not MQTT 5 raises
:class:`ProtocolError` (never ``IndexError`` or ``UnicodeDecodeError``).
"""

import struct
from dataclasses import dataclass
from typing import Final, NamedTuple

PINGREQ: Final = b"\xc0\x00"
DISCONNECT: Final = b"\xe0\x00"

MAX_PACKET_SIZE: Final = 1 << 20
"""The Maximum Packet Size (bytes, whole packet) the ingest session announces by default: the broker drops larger
messages instead of sending them. Node payloads are at most 16 KiB; the margin lets bigger ones arrive and be
counted as ``oversized`` dead letters."""

_CONNACK, _PUBLISH, _SUBACK, _PINGRESP, _DISCONNECT = 2, 3, 9, 13, 14
_MAX_REMAINING: Final = 268_435_455

PACKET_TYPES: Final = (
    "reserved",
    "connect",
    "connack",
    "publish",
    "puback",
    "pubrec",
    "pubrel",
    "pubcomp",
    "subscribe",
    "suback",
    "unsubscribe",
    "unsuback",
    "pingreq",
    "pingresp",
    "disconnect",
    "auth",
)
"""MQTT control packet type names, by type number."""


class ProtocolError(ConnectionError):
    """The broker sent bytes that are not MQTT 5 (the connection is dropped and made again).

    ``reason`` names the kind of fault for metrics: ``malformed``, ``truncated`` (a field runs past the end of its
    packet) or ``oversize`` (a packet over the Maximum Packet Size).
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ConnAck:
    """The broker's answer to CONNECT; ``server_keepalive`` is its Server Keep Alive property, if it sent one."""

    session_present: bool
    reason: int
    server_keepalive: int | None = None
    reason_string: str | None = None


@dataclass(frozen=True, slots=True)
class SubAck:
    """The broker's answer to SUBSCRIBE: one reason code per filter (0-2 granted QoS, >= 0x80 refused)."""

    packet_id: int
    reasons: bytes


class Publish(NamedTuple):
    """A delivered message; ``packet_id`` is None for QoS 0 (nothing to acknowledge).

    A named tuple: one is built per delivery, and a frozen dataclass's ``__init__`` (one ``object.__setattr__`` per
    field) cost three times as much.
    """

    topic: str
    payload: bytes
    qos: int
    packet_id: int | None


@dataclass(frozen=True, slots=True)
class PingResp:
    """Answer to PINGREQ."""


@dataclass(frozen=True, slots=True)
class Disconnect:
    """The broker is closing the connection, with a reason code (and maybe a reason string)."""

    reason: int
    reason_string: str | None = None


@dataclass(frozen=True, slots=True)
class Unknown:
    """A well-framed packet of a type a receive-only subscriber does not expect (skipped, counted)."""

    kind: int


Packet = ConnAck | SubAck | Publish | PingResp | Disconnect | Unknown


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
    max_packet_size: int = MAX_PACKET_SIZE,
    clean_start: bool = False,
    username: str | None = None,
    password: str | None = None,
) -> bytes:
    """CONNECT (MQTT 5) with session expiry, receive maximum and maximum packet size."""
    flags = (0x02 if clean_start else 0) | (0x80 if username is not None else 0) | (0x40 if password is not None else 0)
    properties = (
        b"\x11"
        + struct.pack("!I", session_expiry_s)
        + b"\x21"
        + struct.pack("!H", receive_maximum)
        + b"\x27"
        + struct.pack("!I", max_packet_size)
    )
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
    """Feed it bytes as they arrive; it returns every complete packet and keeps the rest (bounded).

    Only the incomplete tail of a read is kept, in a ``bytearray`` that never holds more than one packet of at most
    ``max_packet_size`` bytes; complete packets are parsed where they lie, in the bytes ``recv`` returned.
    """

    def __init__(self, max_packet_size: int = MAX_PACKET_SIZE) -> None:
        self.max_packet_size = max_packet_size
        self._pending = bytearray()
        self._need = 0
        """Size of the packet in ``_pending`` once its fixed header is in (0 while it is not)."""

    @property
    def buffered(self) -> int:
        """Bytes held of a packet not complete yet."""
        return len(self._pending)

    def feed(self, data: bytes) -> list[Packet]:
        """Parse as many packets as ``data`` (with what was left over) completes."""
        packets: list[Packet] = []
        pos = 0
        pending = self._pending
        if pending:
            if not self._need:  # not even the fixed header was complete: at most 4 bytes held
                data = bytes(pending) + data
                pending.clear()
            else:  # complete the packet in progress, then parse the rest of ``data`` in place
                pos = self._need - len(pending)
                if len(data) < pos:
                    pending += data
                    return packets
                pending += memoryview(data)[:pos]
                whole = bytes(pending)
                pending.clear()
                self._need = 0
                self._parse(whole, 0, packets)
        pos = self._parse(data, pos, packets)
        if pos < len(data):
            pending += memoryview(data)[pos:]
        return packets

    def _parse(self, buf: bytes, pos: int, packets: list[Packet]) -> int:
        """Append the packets complete in ``buf`` from ``pos``; return where the incomplete rest starts."""
        size = len(buf)
        limit = self.max_packet_size
        self._need = 0
        try:
            while size - pos >= 2:
                first = buf[pos]
                length = 0
                shift = 0
                i = pos + 1
                while True:
                    if i >= size:
                        return pos
                    byte = buf[i]
                    length |= (byte & 0x7F) << shift
                    i += 1
                    if byte < 0x80:
                        break
                    shift += 7
                    if shift > 21:
                        raise ProtocolError("malformed", "remaining length longer than 4 bytes")
                end = i + length
                if end - pos > limit:
                    raise ProtocolError(
                        "oversize", f"a {end - pos}-byte packet; the Maximum Packet Size sent in CONNECT is {limit}"
                    )
                if end > size:
                    self._need = end - pos
                    return pos
                if first >> 4 == _PUBLISH:
                    packets.append(_publish(first, buf, i, end))
                else:
                    packets.append(_control(first >> 4, buf, i, end))
                pos = end
        except UnicodeDecodeError as exc:
            raise ProtocolError("malformed", f"a string that is not UTF-8: {exc}") from exc
        return pos


def _truncated(what: str) -> ProtocolError:
    return ProtocolError("truncated", f"{what} runs past the end of its packet")


def _read_varint(buf: bytes, at: int, end: int) -> tuple[int, int]:
    value = 0
    shift = 0
    while True:
        if at >= end:
            raise _truncated("a variable byte integer")
        byte = buf[at]
        value |= (byte & 0x7F) << shift
        at += 1
        if byte < 0x80:
            return value, at
        shift += 7
        if shift > 21:
            raise ProtocolError("malformed", "variable byte integer longer than 4 bytes")


def _control(kind: int, buf: bytes, at: int, end: int) -> Packet:
    if kind == _PINGRESP:
        return PingResp()
    if kind == _CONNACK:
        return _connack(buf, at, end)
    if kind == _SUBACK:
        return _suback(buf, at, end)
    if kind == _DISCONNECT:
        return _disconnect(buf, at, end)
    if kind == 0:
        raise ProtocolError("malformed", "packet type 0 is reserved")
    return Unknown(kind)


def _publish(first: int, buf: bytes, at: int, end: int) -> Publish:
    qos = (first >> 1) & 3
    if qos == 3:
        raise ProtocolError("malformed", "PUBLISH with QoS 3")
    if at + 2 > end:
        raise _truncated("a PUBLISH topic")
    topic_end = at + 2 + ((buf[at] << 8) | buf[at + 1])
    if topic_end > end:
        raise _truncated("a PUBLISH topic")
    topic = buf[at + 2 : topic_end].decode()
    at = topic_end
    packet_id = None
    if qos:
        if at + 2 > end:
            raise _truncated("a PUBLISH packet id")
        packet_id = (buf[at] << 8) | buf[at + 1]
        at += 2
    props, at = _read_varint(buf, at, end)
    at += props
    if at > end:
        raise _truncated("a PUBLISH property block")
    return Publish(topic, buf[at:end], qos, packet_id)


def _connack(buf: bytes, at: int, end: int) -> ConnAck:
    if at + 2 > end:
        raise _truncated("CONNACK")
    props = _properties(buf, at + 2, end) if at + 2 < end else {}
    keepalive = props.get(_SERVER_KEEP_ALIVE)
    reason_string = props.get(_REASON_STRING)
    return ConnAck(
        bool(buf[at] & 1),
        buf[at + 1],
        keepalive if isinstance(keepalive, int) else None,
        reason_string if isinstance(reason_string, str) else None,
    )


def _suback(buf: bytes, at: int, end: int) -> SubAck:
    if at + 2 > end:
        raise _truncated("SUBACK")
    props, codes = _read_varint(buf, at + 2, end)
    codes += props
    if codes > end:
        raise _truncated("a SUBACK property block")
    return SubAck(struct.unpack_from("!H", buf, at)[0], bytes(buf[codes:end]))


def _disconnect(buf: bytes, at: int, end: int) -> Disconnect:
    if at >= end:
        return Disconnect(0)
    props = _properties(buf, at + 1, end) if at + 1 < end else {}
    reason_string = props.get(_REASON_STRING)
    return Disconnect(buf[at], reason_string if isinstance(reason_string, str) else None)


_SERVER_KEEP_ALIVE, _REASON_STRING = 0x13, 0x1F
_BYTE, _TWO, _FOUR, _VARINT, _STRING, _BINARY, _PAIR = range(7)
_PROPERTY_TYPES: Final = {
    **dict.fromkeys((0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A), _BYTE),
    **dict.fromkeys((0x13, 0x21, 0x22, 0x23), _TWO),
    **dict.fromkeys((0x02, 0x11, 0x18, 0x27), _FOUR),
    0x0B: _VARINT,
    **dict.fromkeys((0x03, 0x08, 0x12, 0x15, 0x1A, 0x1C, 0x1F), _STRING),
    **dict.fromkeys((0x09, 0x16), _BINARY),
    0x26: _PAIR,
}
"""MQTT 5 property identifiers and the type of their value."""


def _properties(buf: bytes, at: int, end: int) -> dict[int, int | str]:
    """The integer and string properties of a property block (binary data and user properties are skipped)."""
    length, at = _read_varint(buf, at, end)
    stop = at + length
    if stop > end:
        raise _truncated("a property block")
    found: dict[int, int | str] = {}
    while at < stop:
        ident = buf[at]
        kind = _PROPERTY_TYPES.get(ident)
        if kind is None:
            raise ProtocolError("malformed", f"unknown property identifier {ident:#04x}")
        at += 1
        if kind == _VARINT:
            found[ident], at = _read_varint(buf, at, stop)
            continue
        if kind in (_BYTE, _TWO, _FOUR):
            width = 1 if kind == _BYTE else 2 if kind == _TWO else 4
            if at + width > stop:
                raise _truncated(f"property {ident:#04x}")
            found[ident] = int.from_bytes(buf[at : at + width])
            at += width
            continue
        for item in range(2 if kind == _PAIR else 1):
            if at + 2 > stop:
                raise _truncated(f"property {ident:#04x}")
            item_end = at + 2 + ((buf[at] << 8) | buf[at + 1])
            if item_end > stop:
                raise _truncated(f"property {ident:#04x}")
            if kind == _STRING and item == 0:
                found[ident] = buf[at + 2 : item_end].decode()
            at = item_end
    return found
