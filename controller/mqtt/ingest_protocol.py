"""The ingest session's MQTT conversation without I/O: bytes and the time in; bytes to send, deliveries, errors out.

:class:`~controller.mqtt.ingest_session.IngestLink` moves the bytes; everything that decides lives here, where a test
can script the broker byte by byte and move the clock: CONNECT then SUBSCRIBE, the keep-alive (the broker's Server
Keep Alive wins over ours), how long the broker may stay silent after a PINGREQ, and what ends a connection. Every
end is one :class:`SessionError` (a ``ConnectionError``) with a ``reason`` for the metric and an ``action`` for the
log; the link then connects again.
"""

from collections.abc import Callable
from dataclasses import dataclass

from controller.mqtt import wire

TAKEN_OVER = 0x8E
"""DISCONNECT reason code: another connection with the same client id took the session over."""


class SessionError(ConnectionError):
    """The connection cannot go on; connect again. ``reason`` labels the metric, ``action`` goes to the log."""

    def __init__(self, reason: str, detail: str, action: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.action = action


@dataclass(frozen=True)
class SessionParams:
    """What the session announces in CONNECT and subscribes to."""

    client_id: str
    filters: list[str]
    keepalive_s: int = 30
    session_expiry_s: int = 3600
    receive_maximum: int = 20000
    max_packet_size: int = wire.MAX_PACKET_SIZE
    username: str | None = None
    password: str | None = None


class IngestProtocol:
    """One connection's protocol state: call :meth:`receive` with what arrived and :meth:`poll` now and then,
    send what :meth:`data_to_send` returns, and report other sends with :meth:`sent`."""

    def __init__(
        self, params: SessionParams, now: float, on_unknown: Callable[[str], None] = lambda _type: None
    ) -> None:
        self.params = params
        self.keepalive_s = params.keepalive_s
        """The keep-alive in force: ours until the broker's CONNACK names its own."""
        self.connack: wire.ConnAck | None = None
        self.subscribed = False
        self._on_unknown = on_unknown
        self._parser = wire.Parser(params.max_packet_size)
        self._outgoing = bytearray(
            wire.connect(
                params.client_id,
                keepalive_s=params.keepalive_s,
                session_expiry_s=params.session_expiry_s,
                receive_maximum=params.receive_maximum,
                max_packet_size=params.max_packet_size,
                username=params.username,
                password=params.password,
            )
        )
        self._last_sent = now
        self._last_received = now
        self._awaiting: tuple[str, float] | None = ("CONNACK", now)
        """The answer the broker owes (CONNACK, PINGRESP) and since when."""

    def data_to_send(self) -> bytes:
        """Bytes to send now (CONNECT, SUBSCRIBE, PINGREQ); empty when there are none."""
        data = bytes(self._outgoing)
        self._outgoing.clear()
        return data

    def sent(self, now: float) -> None:
        """Something (acknowledgements, or :meth:`data_to_send`) went to the broker at ``now``."""
        self._last_sent = now

    def receive(self, data: bytes, now: float) -> list[wire.Publish]:
        """Take bytes from the broker; return the deliveries in them, in order. Raises :class:`SessionError`."""
        self._last_received = now
        try:
            packets = self._parser.feed(data)
        except wire.ProtocolError as exc:
            raise SessionError(exc.reason, f"the broker sent bytes that are not MQTT 5: {exc}", _REPORT_BROKER) from exc
        deliveries: list[wire.Publish] = []
        for packet in packets:
            if isinstance(packet, wire.Publish):
                deliveries.append(packet)
            elif isinstance(packet, wire.PingResp):
                self._awaiting = None
            elif isinstance(packet, wire.ConnAck):
                self._connected(packet)
            elif isinstance(packet, wire.SubAck):
                self._subscribed(packet)
            elif isinstance(packet, wire.Disconnect):
                raise _disconnected(packet, self.params.client_id)
            else:
                self._on_unknown(wire.PACKET_TYPES[packet.kind])
        return deliveries

    def poll(self, now: float) -> None:
        """Queue a PINGREQ when one is due; raise :class:`SessionError` when the broker stayed silent too long."""
        if self._awaiting is not None:
            owed, since = self._awaiting
            silent_s = now - max(since, self._last_received)
            if silent_s >= self._answer_timeout_s():
                raise SessionError(
                    "keepalive_timeout",
                    f"no {owed} and no byte from the broker for {silent_s:.0f} s: the connection is dead",
                    "reconnecting; if this repeats, check the network path to the broker (firewall or NAT idle "
                    "timeouts, a half-open TCP connection) and the broker's load",
                )
        elif self.keepalive_s and now - self._last_sent >= self.keepalive_s / 2:
            self._outgoing += wire.PINGREQ
            self._awaiting = ("PINGRESP", now)

    def _answer_timeout_s(self) -> float:
        return max(self.keepalive_s or self.params.keepalive_s, 2) / 2

    def _connected(self, packet: wire.ConnAck) -> None:
        if packet.reason != 0:
            detail = f" ({packet.reason_string})" if packet.reason_string else ""
            raise SessionError(
                "refused",
                f"broker refused CONNECT with reason code {packet.reason:#x}{detail}",
                "check the broker user, its password and the broker's ACL for this client id",
            )
        self.connack = packet
        self._awaiting = None
        if packet.server_keepalive:
            self.keepalive_s = packet.server_keepalive
        self._outgoing += wire.subscribe(1, self.params.filters)

    def _subscribed(self, packet: wire.SubAck) -> None:
        refused = [f for f, r in zip(self.params.filters, packet.reasons, strict=False) if r >= 0x80]
        if refused:
            raise SessionError(
                "refused", f"broker refused subscriptions {refused}", "check the broker's ACL for the controller user"
            )
        self.subscribed = True


_REPORT_BROKER = "reconnecting; if this repeats, report it with the broker's name and version"


def _disconnected(packet: wire.Disconnect, client_id: str) -> SessionError:
    detail = f"broker sent DISCONNECT with reason code {packet.reason:#x}" + (
        f" ({packet.reason_string})" if packet.reason_string else ""
    )
    if packet.reason == TAKEN_OVER:
        return SessionError(
            "session_taken_over",
            f"{detail}: another connection logged in with client id {client_id!r} and took the session over",
            "give every controller process its own --client-id (processes sharing the load use --share-group); "
            "if none runs twice, find who else logs in with this client id in the broker's log",
        )
    return SessionError("broker_disconnect", detail, "reconnecting; see the broker's log for why it disconnected")
