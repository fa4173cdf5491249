"""The ingest session: a receive-only MQTT 5 connection in one thread, acknowledging only what was stored.

It subscribes to the channels it is given: every node's status and command results as ordinary subscriptions
(every controller process needs all of them, and shared subscriptions get no retained births), telemetry and events
optionally as an MQTT 5 shared subscription, so several controller processes split the load. The controller runs
two: one for telemetry, one for the control traffic, each with its own receive window. The session is persistent:
what arrives while the controller is away, or was delivered but never acknowledged, is delivered again. The receive
maximum bounds how many unacknowledged messages the broker hands over: it is the ingest buffer and its back-pressure.

The protocol decisions (keep-alive, deadlines, what ends a connection) are in
:mod:`controller.mqtt.ingest_protocol`; this thread only moves bytes. Whatever ends a connection, it is counted
by reason, logged with what to do, and followed by a reconnect with jittered backoff: the thread only ends on
:meth:`IngestLink.stop`.
"""

import logging
import random
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_when_event_set

from controller.mqtt import wire
from controller.mqtt.ingest_protocol import IngestProtocol, SessionError, SessionParams
from controller.mqtt.session_metrics import SessionMetrics
from controller.mqtt.tls_channel import TlsChannel
from schemas import Channel, fleet_filter
from schemas.broker import NO_BROKER_FILES, BrokerFiles, broker_address, redact_url

log = logging.getLogger(__name__)

AckToken = int
"""What acknowledges one QoS 1 delivery: its packet id and the connection it came on (:func:`ack_token`)."""
_PACKET_ID_BITS = 16


def ack_token(connection: int, packet_id: int) -> AckToken:
    """The token of delivery ``packet_id`` on the ``connection``-th connection of the session.

    A packet id names a message only on the connection that delivered it: after a reconnect the broker hands the
    unacknowledged message over again (same id) and, once that copy is acknowledged, reuses the id for another
    message. An acknowledgement from an earlier connection is therefore never sent: it could acknowledge a message
    that was not stored yet. The copy delivered again is acknowledged once it is handled (a duplicate, at once).
    """
    return connection << _PACKET_ID_BITS | packet_id


CONNECT_TIMEOUT_S = 5.0
"""TCP connect and TLS handshake must finish within this."""

DATA_CHANNELS = (Channel.TELEMETRY,)
"""The data session's channels: acknowledged once InfluxDB stored them."""
CONTROL_CHANNELS = (Channel.STATUS, Channel.RESULT, Channel.EVENT)
"""The control session's channels: acknowledged once acted on and spooled in the controller's store."""
CONTROL_SUFFIX = "-control"
"""Appended to the client id and broker user name of the control session."""
SHARED_CHANNELS = frozenset({Channel.TELEMETRY, Channel.EVENT})
"""Channels split among the processes of a ``share_group``; every process needs every status and result."""

STOP_WAIT_S = 2.0
""":meth:`IngestLink.stop` waits this long for the thread (a connect in progress may outlive it; nothing is lost)."""


@dataclass(frozen=True)
class LinkSettings:
    """Connection parameters of the ingest session."""

    url: str
    client_id: str
    broker_files: BrokerFiles = NO_BROKER_FILES
    share_group: str | None = None
    channels: tuple[Channel, ...] = (Channel.STATUS, Channel.RESULT, Channel.TELEMETRY, Channel.EVENT)
    """What the session subscribes to (the controller runs one session for telemetry, one for the rest)."""
    username_suffix: str = ""
    """Appended to the URL's user name (same password): a broker binding client ids to user names
    (``use_username_as_clientid``) needs one user per connection."""
    receive_maximum: int = 20000
    session_expiry_s: int = 3600
    keepalive_s: int = 30
    max_packet_size: int = wire.MAX_PACKET_SIZE
    """Announced in CONNECT: the broker drops larger messages instead of sending them (see README, MQTT broker)."""


class IngestLink:
    """Keeps the ingest session up (reconnecting with jittered backoff) and hands each delivery on.

    ``on_message`` may raise :class:`~controller.mqtt.ingest_protocol.SessionError` to end the connection without
    acknowledging the message: the broker delivers it again after the reconnect.
    """

    def __init__(
        self,
        settings: LinkSettings,
        on_message: Callable[[str, bytes, AckToken | None], None],
        registry: CollectorRegistry | None = None,
        metrics: SessionMetrics | None = None,
    ) -> None:
        self.settings = settings
        self._on_message = on_message
        self.metrics = metrics or SessionMetrics(registry or CollectorRegistry())
        broker_address(settings.url, settings.broker_files)  # unreadable files stop the controller at start
        self.connected = threading.Event()
        self._stopping = threading.Event()
        self._paused = threading.Event()
        self._send_lock = threading.Lock()
        self._sock: socket.socket | TlsChannel | None = None
        self._protocol: IngestProtocol | None = None
        self._subscribed_at_attempt = 0
        self._connection = 0
        self._thread = threading.Thread(target=self._run, name="mqtt-ingest", daemon=True)

    def filters(self) -> list[str]:
        """The topic filters of the session."""
        group = self.settings.share_group
        return [fleet_filter(c, group if c in SHARED_CHANNELS else None) for c in self.settings.channels]

    @property
    def alive(self) -> bool:
        """The session thread runs (it reconnects by itself; it ends only on :meth:`stop`)."""
        return self._thread.is_alive()

    def start(self, timeout_s: float = 30.0) -> None:
        """Start the session thread; return once subscribed, or raise after ``timeout_s``."""
        self._thread.start()
        if not self.connected.wait(timeout_s):
            raise ConnectionError(
                f"no MQTT session with {redact_url(self.settings.url)} within {timeout_s} s; is the broker up?"
            )

    def pause(self) -> None:
        """Stop handing deliveries on, keeping the connection so acknowledgements of what is still being stored go
        out (shutdown: pause, flush, then :meth:`stop`); what arrives meanwhile stays unacknowledged."""
        self._paused.set()

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
        self._thread.join(STOP_WAIT_S)

    def ack(self, tokens: list[AckToken]) -> None:
        """Acknowledge deliveries, in the order they arrived, in one send; those of an earlier connection are
        skipped (their messages come again on this one)."""
        current = self._connection
        ids = [t & 0xFFFF for t in tokens if t >> _PACKET_ID_BITS == current]
        if len(ids) < len(tokens):
            self.metrics.stale_acks.inc(len(tokens) - len(ids))
        if ids:
            self._send(wire.pubacks(ids), current)

    def _send(self, data: bytes, connection: int | None = None) -> None:
        """Send from any thread (on ``connection`` only, when given); the protocol object only learns that something
        went out."""
        with self._send_lock:
            if self._sock is None or self._protocol is None or connection not in (None, self._connection):
                return  # disconnected: the broker redelivers these with the same packet ids after reconnect
            try:
                self._sock.sendall(data)
                self._protocol.sent(time.monotonic())
            except OSError as exc:
                log.warning("send failed error=%r action=reconnecting; unacknowledged messages are redelivered", exc)

    def _flush(self, protocol: IngestProtocol) -> None:
        """Send what the protocol has to say (only the session thread touches it beyond :meth:`IngestProtocol.sent`)."""
        data = protocol.data_to_send()
        if data:
            self._send(data)

    def _run(self) -> None:
        for attempt in Retrying(
            retry=retry_if_exception_type(Exception),
            wait=self._wait_s,
            stop=stop_when_event_set(self._stopping),
            sleep=self._backoff,
            retry_error_callback=lambda _state: None,  # stopped while the broker was away: nothing to report
            before_sleep=self._dropped,
        ):
            with attempt:
                self._session(attempt.retry_state.attempt_number)

    def _wait_s(self, state: RetryCallState) -> float:
        """Jittered exponential backoff over the failures since the last session that got subscribed."""
        failures = state.attempt_number - self._subscribed_at_attempt
        return random.uniform(0, min(30.0, 0.5 * 2 ** min(failures, 8)))

    def _backoff(self, seconds: float) -> None:
        """Wait before reconnecting; a stop cuts the wait short."""
        self._stopping.wait(seconds)

    def _dropped(self, state: RetryCallState) -> None:
        """Count and log why a connection ended or could not be made."""
        exc = state.outcome.exception() if state.outcome else None
        reason, action = _reason_and_action(exc)
        self.metrics.drops.labels(reason).inc()
        log.log(
            logging.ERROR if reason == "internal" else logging.WARNING,
            "ingest session down url=%s client_id=%s reason=%s error=%s attempt=%d action=%s; messages wait in the "
            "controller's session",
            redact_url(self.settings.url),
            self.settings.client_id,
            reason,
            exc,
            state.attempt_number,
            action,
            exc_info=exc if reason == "internal" else None,
        )

    def _session(self, attempt: int) -> None:
        try:
            broker = broker_address(self.settings.url, self.settings.broker_files)  # re-read: files get renewed
        except (OSError, ValueError) as exc:
            raise SessionError(
                "broker_files",
                f"the broker files could not be read: {exc}",
                "check --mqtt-ca-file, --mqtt-cert-file, --mqtt-key-file and --mqtt-password-file",
            ) from exc
        try:
            raw = socket.create_connection((broker.host, broker.port), timeout=CONNECT_TIMEOUT_S)
        except OSError as exc:
            raise _UnreachableError(exc) from exc
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock = raw if broker.tls is None else TlsChannel(raw, broker.tls, broker.host)
        except BaseException:
            raw.close()
            raise
        params = SessionParams(
            client_id=self.settings.client_id,
            filters=self.filters(),
            keepalive_s=self.settings.keepalive_s,
            session_expiry_s=self.settings.session_expiry_s,
            receive_maximum=self.settings.receive_maximum,
            max_packet_size=self.settings.max_packet_size,
            username=f"{broker.username}{self.settings.username_suffix}" if broker.username else None,
            password=broker.password,
        )
        unknown = self.metrics.unknown_packets
        protocol = IngestProtocol(params, time.monotonic(), lambda kind: unknown.labels(kind).inc())
        raw.settimeout(min(1.0, max(protocol.keepalive_s, 1) / 4))
        with self._send_lock:
            self._sock = sock
            self._protocol = protocol
            self._connection += 1
        connection = self._connection
        try:
            self._flush(protocol)
            self._serve(sock, protocol, attempt, connection)
        finally:
            self.connected.clear()
            with self._send_lock:
                self._sock = None
                self._protocol = None
            sock.close()

    def _serve(self, sock: socket.socket | TlsChannel, protocol: IngestProtocol, attempt: int, connection: int) -> None:
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
                if self._stopping.is_set():
                    return
                raise SessionError(
                    "connection_closed",
                    "the broker closed the connection without a DISCONNECT",
                    "reconnecting; see the broker's log (an ACL or client id conflict, or a restart)",
                )
            now = time.monotonic()
            if data:
                for packet in protocol.receive(data, now):
                    if self._paused.is_set():
                        continue  # shutting down: the broker delivers it again after the next start
                    token = None if packet.packet_id is None else ack_token(connection, packet.packet_id)
                    self._on_message(packet.topic, packet.payload, token)
                if protocol.subscribed and not self.connected.is_set():
                    self._subscribed(protocol, attempt)
            protocol.poll(now)
            self._flush(protocol)

    def _subscribed(self, protocol: IngestProtocol, attempt: int) -> None:
        self._subscribed_at_attempt = attempt
        self.connected.set()
        log.info(
            "connected url=%s client_id=%s session_present=%s share_group=%s keepalive_s=%d",
            redact_url(self.settings.url),
            self.settings.client_id,
            protocol.connack.session_present if protocol.connack else None,
            self.settings.share_group,
            protocol.keepalive_s,
        )


class _UnreachableError(ConnectionError):
    """No TCP connection to the broker."""


def _reason_and_action(exc: BaseException | None) -> tuple[str, str]:
    """The metric label and the log's action for what ended a connection attempt."""
    if isinstance(exc, SessionError):
        return exc.reason, exc.action
    if isinstance(exc, ssl.SSLError):
        return "tls", "check the broker's certificate against --mqtt-ca-file (and the client certificate, if needed)"
    if isinstance(exc, _UnreachableError):
        return "unreachable", "retrying with backoff; check that the broker is up and reachable at this URL"
    if isinstance(exc, OSError):
        return "connection_lost", "reconnecting; unacknowledged messages are redelivered"
    return "internal", "reconnecting; report this bug with the traceback below"
