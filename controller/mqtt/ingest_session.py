"""The ingest session: a receive-only MQTT 5 connection in one thread, acknowledging only what was stored.

It subscribes to every node's status and command results (ordinary subscriptions: every controller process needs
all of them, and shared subscriptions get no retained births) and to telemetry and events (optionally an MQTT 5
shared subscription, so several controller processes split the load). The session is persistent: what arrives
while the controller is away, or was delivered but never acknowledged, is delivered again. The receive maximum
bounds how many unacknowledged messages the broker hands over: it is the ingest buffer and its back-pressure.
"""

import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from tenacity import Retrying, retry_if_exception_type, stop_when_event_set, wait_random_exponential

from controller.mqtt import wire
from controller.mqtt.tls_channel import TlsChannel
from schemas import Channel, fleet_filter
from schemas.broker import NO_BROKER_FILES, BrokerFiles, broker_address, redact_url

log = logging.getLogger(__name__)

AckToken = int
"""What acknowledges one QoS 1 delivery: its packet id."""


@dataclass(frozen=True)
class LinkSettings:
    """Connection parameters of the ingest session."""

    url: str
    client_id: str
    broker_files: BrokerFiles = NO_BROKER_FILES
    share_group: str | None = None
    receive_maximum: int = 20000
    session_expiry_s: int = 3600
    keepalive_s: int = 30


class SessionRefusedError(ConnectionError):
    """The broker answered CONNECT or SUBSCRIBE with a failure reason code."""


class IngestLink:
    """Keeps the ingest session up (reconnecting with jittered backoff) and hands each delivery on."""

    def __init__(self, settings: LinkSettings, on_message: Callable[[str, bytes, AckToken | None], None]) -> None:
        self.settings = settings
        self._on_message = on_message
        broker_address(settings.url, settings.broker_files)  # unreadable files stop the controller at start
        self.connected = threading.Event()
        self._stopping = threading.Event()
        self._send_lock = threading.Lock()
        self._sock: socket.socket | TlsChannel | None = None
        self._last_sent = 0.0
        self._thread = threading.Thread(target=self._run, name="mqtt-ingest", daemon=True)

    def filters(self) -> list[str]:
        """The topic filters of the session."""
        group = self.settings.share_group
        return [
            fleet_filter(Channel.STATUS),
            fleet_filter(Channel.RESULT),
            fleet_filter(Channel.TELEMETRY, group),
            fleet_filter(Channel.EVENT, group),
        ]

    def start(self, timeout_s: float = 30.0) -> None:
        """Start the session thread; return once subscribed, or raise after ``timeout_s``."""
        self._thread.start()
        if not self.connected.wait(timeout_s):
            raise ConnectionError(
                f"no MQTT session with {redact_url(self.settings.url)} within {timeout_s} s; is the broker up?"
            )

    def stop(self) -> None:
        """Disconnect cleanly; unacknowledged messages stay in the session for the next start."""
        self._stopping.set()
        with self._send_lock:
            if self._sock is not None:
                try:
                    self._sock.sendall(wire.DISCONNECT)
                    self._sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self._thread.join(10)

    def ack(self, tokens: list[AckToken]) -> None:
        """Acknowledge deliveries, in the order they arrived, in one send."""
        self._send(wire.pubacks(tokens))

    def _send(self, data: bytes) -> None:
        with self._send_lock:
            if self._sock is None:
                return  # disconnected: the broker redelivers these with the same packet ids after reconnect
            try:
                self._sock.sendall(data)
                self._last_sent = time.monotonic()
            except OSError as exc:
                log.warning("send failed error=%r action=reconnecting; unacknowledged messages are redelivered", exc)

    def _run(self) -> None:
        for attempt in Retrying(
            retry=retry_if_exception_type(OSError),
            wait=wait_random_exponential(multiplier=0.5, max=30),
            stop=stop_when_event_set(self._stopping),
            sleep=self._backoff,
            retry_error_callback=lambda _state: None,  # stopped while the broker was away: nothing to report
            before_sleep=lambda state: log.warning(
                "broker unreachable url=%s error=%r attempt=%d action=retrying with backoff; "
                "messages wait in the controller's session",
                redact_url(self.settings.url),
                state.outcome.exception() if state.outcome else None,
                state.attempt_number,
            ),
        ):
            with attempt:
                self._session()
                if not self._stopping.is_set():
                    raise ConnectionResetError("the broker closed the session")

    def _backoff(self, seconds: float) -> None:
        """Wait before reconnecting; a stop cuts the wait short."""
        self._stopping.wait(seconds)

    def _session(self) -> None:
        broker = broker_address(self.settings.url, self.settings.broker_files)  # re-read: files get renewed
        raw = socket.create_connection((broker.host, broker.port), timeout=10)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        raw.settimeout(self.settings.keepalive_s / 2)
        try:
            sock = raw if broker.tls is None else TlsChannel(raw, broker.tls, broker.host)
        except BaseException:
            raw.close()
            raise
        parser = wire.Parser()
        with self._send_lock:
            self._sock = sock
        try:
            self._send(
                wire.connect(
                    self.settings.client_id,
                    keepalive_s=self.settings.keepalive_s,
                    session_expiry_s=self.settings.session_expiry_s,
                    receive_maximum=self.settings.receive_maximum,
                    username=broker.username,
                    password=broker.password,
                )
            )
            while not self._stopping.is_set():
                try:
                    data = sock.recv(1 << 18)
                except TimeoutError:
                    data = None
                except OSError:
                    if self._stopping.is_set():
                        return  # our own DISCONNECT: a TLS peer may answer it with a reset
                    raise
                if data == b"":
                    return
                if data:
                    self._dispatch(parser.feed(data))
                if time.monotonic() - self._last_sent > self.settings.keepalive_s / 2:
                    self._send(wire.PINGREQ)
        finally:
            self.connected.clear()
            with self._send_lock:
                self._sock = None
            sock.close()

    def _dispatch(self, packets: list[wire.Packet]) -> None:
        for packet in packets:
            if isinstance(packet, wire.Publish):
                self._on_message(packet.topic, packet.payload, packet.packet_id)
            elif isinstance(packet, wire.ConnAck):
                if packet.reason != 0:
                    raise SessionRefusedError(f"broker refused CONNECT with reason code {packet.reason:#x}")
                self._send(wire.subscribe(1, self.filters()))
                log.info(
                    "connected url=%s client_id=%s session_present=%s share_group=%s",
                    redact_url(self.settings.url),
                    self.settings.client_id,
                    packet.session_present,
                    self.settings.share_group,
                )
            elif isinstance(packet, wire.SubAck):
                refused = [f for f, r in zip(self.filters(), packet.reasons, strict=False) if r >= 0x80]
                if refused:
                    raise SessionRefusedError(f"broker refused subscriptions {refused}; check the broker's ACL")
                self.connected.set()
            elif isinstance(packet, wire.Disconnect):
                raise ConnectionResetError(f"broker sent DISCONNECT with reason code {packet.reason:#x}")
