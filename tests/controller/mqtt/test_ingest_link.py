"""The ingest session thread against a scripted TCP broker: whatever a connection ends with, it is counted by
reason and followed by a reconnect; the thread never dies."""

import contextlib
import logging
import socket
import threading
from collections.abc import Callable, Iterator

import pytest
from prometheus_client import CollectorRegistry

from controller.mqtt import wire
from controller.mqtt.ingest_session import IngestLink, LinkSettings
from tests.controller.mqtt.test_ingest_protocol import CONNACK, SUBACK
from tests.controller.mqtt.test_mqtt_wire import publish_packet
from tests.harness.mqtt import wait_until

Script = Callable[[socket.socket], None]


class ScriptedBroker:
    """Accepts connections on a free port; the n-th connection is played by the n-th script (later ones: last)."""

    def __init__(self, scripts: list[Script]) -> None:
        self.scripts = scripts
        self.connections = 0
        self.received: list[bytes] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            script = self.scripts[min(self.connections, len(self.scripts) - 1)]
            self.connections += 1
            threading.Thread(target=self._play, args=(conn, script), daemon=True).start()

    def _play(self, conn: socket.socket, script: Script) -> None:
        with conn, contextlib.suppress(OSError):
            script(conn)

    def close(self) -> None:
        self._listener.close()


def handshake(conn: socket.socket) -> None:
    """Read CONNECT, answer CONNACK; read SUBSCRIBE, answer SUBACK."""
    conn.recv(4096)
    conn.sendall(CONNACK)
    conn.recv(4096)
    conn.sendall(SUBACK)


def then_send(data: bytes) -> Script:
    def script(conn: socket.socket) -> None:
        handshake(conn)
        conn.sendall(data)
        conn.recv(4096)  # until the controller hangs up

    return script


def healthy(conn: socket.socket) -> None:
    handshake(conn)
    conn.sendall(publish_packet("lockers/v1/n1/telemetry", b"good", 1, 9))
    while data := conn.recv(4096):
        if wire.PINGREQ in data:
            conn.sendall(b"\xd0\x00")


def silent(conn: socket.socket) -> None:
    """Answers the handshake, then never again (a half-open connection)."""
    handshake(conn)
    while conn.recv(4096):
        pass


@pytest.fixture
def run_link() -> Iterator[Callable[..., tuple[IngestLink, list[tuple[str, bytes, int | None]]]]]:
    started: list[tuple[IngestLink, ScriptedBroker]] = []

    def run(
        scripts: list[Script], on_message: Callable[[str, bytes, int | None], None] | None = None, keepalive_s: int = 30
    ) -> tuple[IngestLink, list[tuple[str, bytes, int | None]]]:
        broker = ScriptedBroker(scripts)
        messages: list[tuple[str, bytes, int | None]] = []
        link = IngestLink(
            LinkSettings(url=f"mqtt://127.0.0.1:{broker.port}", client_id="ctl", keepalive_s=keepalive_s),
            on_message or (lambda *m: messages.append(m)),
            CollectorRegistry(),
        )
        link.start(timeout_s=10)
        started.append((link, broker))
        return link, messages

    yield run
    for link, broker in started:
        link.stop()
        broker.close()


def drops(link: IngestLink, reason: str) -> float:
    value: float = link.metrics.drops.labels(reason)._value.get()
    return value


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (publish_packet("x", b"", 1, 1).replace(b"x", b"\xff"), "malformed"),  # was a UnicodeDecodeError
        (b"\x32\x03\x00\x09t", "truncated"),
        (b"\x30" + wire.varint(2 << 20) + b"\x00", "oversize"),
        (b"\xe0\x01\x8e", "session_taken_over"),
    ],
)
def test_a_bad_connection_is_counted_and_followed_by_a_reconnect(
    run_link: Callable[..., tuple[IngestLink, list[tuple[str, bytes, int | None]]]],
    caplog: pytest.LogCaptureFixture,
    bad: bytes,
    reason: str,
) -> None:
    caplog.set_level(logging.WARNING, logger="controller.mqtt.ingest_session")
    link, messages = run_link([then_send(bad), healthy])
    assert wait_until(
        lambda: [(t, p, (k or 0) & 0xFFFF) for t, p, k in messages] == [("lockers/v1/n1/telemetry", b"good", 9)], 10
    )
    assert drops(link, reason) == 1
    assert link._thread.is_alive() and link.connected.is_set()
    [record] = [r for r in caplog.records if "ingest session down" in r.getMessage()]
    assert f"reason={reason}" in record.getMessage() and "action=" in record.getMessage()


def test_a_takeover_says_to_give_each_controller_its_own_client_id(
    run_link: Callable[..., tuple[IngestLink, list[tuple[str, bytes, int | None]]]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="controller.mqtt.ingest_session")
    _link, messages = run_link([then_send(b"\xe0\x01\x8e"), healthy])
    assert wait_until(lambda: len(messages) == 1, 10)
    assert "took the session over" in caplog.text and "own --client-id" in caplog.text


def test_a_half_open_connection_is_dropped_after_the_ping_deadline(
    run_link: Callable[..., tuple[IngestLink, list[tuple[str, bytes, int | None]]]],
) -> None:
    link, messages = run_link([silent, healthy], keepalive_s=2)
    assert wait_until(lambda: drops(link, "keepalive_timeout") == 1, 10)
    assert wait_until(lambda: len(messages) == 1, 10)
    assert link._thread.is_alive()


def test_a_crash_in_the_message_handler_reconnects_instead_of_ending_the_thread(
    run_link: Callable[..., tuple[IngestLink, list[tuple[str, bytes, int | None]]]],
) -> None:
    calls: list[bytes] = []

    def handler(_topic: str, payload: bytes, _token: int | None) -> None:
        calls.append(payload)
        if len(calls) == 1:
            raise RuntimeError("a bug")

    link, _ = run_link([healthy], on_message=handler)
    assert wait_until(lambda: len(calls) == 2, 10)  # redelivered on the next connection
    assert drops(link, "internal") == 1
    assert link._thread.is_alive()


def test_unexpected_packet_types_are_counted(
    run_link: Callable[..., tuple[IngestLink, list[tuple[str, bytes, int | None]]]],
) -> None:
    link, messages = run_link([then_send(b"\xf0\x00" + publish_packet("t", b"after", 1, 2))])
    assert wait_until(lambda: len(messages) == 1, 10)
    assert link.metrics.unknown_packets.labels("auth")._value.get() == 1


def test_an_acknowledgement_from_an_earlier_connection_is_never_sent_on_a_later_one(
    run_link: Callable[..., tuple[IngestLink, list[tuple[str, bytes, int | None]]]],
) -> None:
    """Packet id 5 names one message on the first connection and, after the reconnect, its copy: the broker frees
    the id once either acknowledgement arrives and reuses it. Only the copy's own acknowledgement may be sent."""
    second: list[bytes] = []
    reconnect = threading.Event()

    def first(conn: socket.socket) -> None:
        handshake(conn)
        conn.sendall(publish_packet("lockers/v1/n1/telemetry", b"m", 1, 5))
        reconnect.wait(10)  # the handler holds the token; then the connection fails

    def again(conn: socket.socket) -> None:
        handshake(conn)
        conn.sendall(publish_packet("lockers/v1/n1/telemetry", b"m", 1, 5))
        while data := conn.recv(4096):
            second.append(data)

    link, messages = run_link([first, again])
    assert wait_until(lambda: len(messages) == 1, 10)
    reconnect.set()
    assert wait_until(lambda: len(messages) == 2, 10)
    (_, _, old), (_, _, new) = messages
    assert old is not None and new is not None and old != new
    link.ack([old])
    link.ack([new])
    assert wait_until(lambda: b"".join(second) == wire.pubacks([5]), 10), second
    assert link.metrics.stale_acks._value.get() == 1
