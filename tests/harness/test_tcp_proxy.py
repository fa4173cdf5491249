"""The chaos suite's TCP proxy against a local echo server: pass, delay, drop and black hole."""

import socket
import socketserver
import threading
import time
from collections.abc import Iterator

import pytest

from tests.harness.mqtt import wait_until
from tests.harness.tcp_proxy import Mode, TcpProxy


class _Echo(socketserver.BaseRequestHandler):
    server: "EchoServer"

    def handle(self) -> None:
        with self.server.lock:
            self.server.connections += 1
        while data := self.request.recv(4096):
            self.request.sendall(data)
        with self.server.lock:
            self.server.ended += 1


class EchoServer(socketserver.ThreadingTCPServer):
    """Echoes what it receives; counts connections and orderly ends (EOF) it saw."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Echo)
        self.lock = threading.Lock()
        self.connections = 0
        self.ended = 0


@pytest.fixture
def proxy() -> Iterator[tuple[TcpProxy, EchoServer]]:
    echo = EchoServer()
    threading.Thread(target=echo.serve_forever, daemon=True).start()
    with TcpProxy("127.0.0.1", echo.server_address[1]) as tcp_proxy:
        yield tcp_proxy, echo
    echo.shutdown()
    echo.server_close()


def dial(tcp_proxy: TcpProxy) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", tcp_proxy.port), timeout=5)
    sock.settimeout(5)
    return sock


def receive(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def test_pass_and_delay_forward_in_order_and_delay_holds_each_chunk(proxy: tuple[TcpProxy, EchoServer]) -> None:
    tcp_proxy, echo = proxy
    with dial(tcp_proxy) as sock:
        sock.sendall(b"hello")
        assert receive(sock, 5) == b"hello"
        tcp_proxy.set_mode(Mode.DELAY, delay_ms=150)
        started = time.monotonic()
        sock.sendall(b"slow")
        assert receive(sock, 4) == b"slow"
        assert time.monotonic() - started >= 0.3  # held once on the way up, once on the way down
        tcp_proxy.set_mode(Mode.PASS)
        for i in range(50):
            sock.sendall(b"%03d" % i)
        assert receive(sock, 150) == b"".join(b"%03d" % i for i in range(50))
    assert wait_until(lambda: echo.ended == 1, 5)  # the client's close reached the server as an orderly end
    assert tcp_proxy.counts.bytes_up == tcp_proxy.counts.bytes_down == 159
    with pytest.raises(ValueError, match="delay_ms"):
        tcp_proxy.set_mode(Mode.DELAY)


def test_drop_resets_connections_and_refuses_new_ones_until_mended(proxy: tuple[TcpProxy, EchoServer]) -> None:
    tcp_proxy, echo = proxy
    sock = dial(tcp_proxy)
    sock.sendall(b"x")
    assert receive(sock, 1) == b"x"
    tcp_proxy.set_mode(Mode.DROP)
    with pytest.raises(ConnectionResetError):
        sock.recv(1)
    sock.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", tcp_proxy.port), timeout=5)
    assert tcp_proxy.counts.reset == 1 and tcp_proxy.open_connections() == 0
    tcp_proxy.set_mode(Mode.PASS)
    with dial(tcp_proxy) as again:
        again.sendall(b"back")
        assert receive(again, 4) == b"back"
    assert echo.connections == 2


def test_a_black_hole_holds_bytes_and_closes_both_ways_then_lets_them_through_in_order(
    proxy: tuple[TcpProxy, EchoServer],
) -> None:
    tcp_proxy, echo = proxy
    old = dial(tcp_proxy)
    old.sendall(b"a")
    assert receive(old, 1) == b"a"
    tcp_proxy.set_mode(Mode.BLACK_HOLE)
    old.sendall(b"bc")
    closing = dial(tcp_proxy)
    closing.close()  # a client that gives up during the black hole: nobody upstream hears of it
    new = dial(tcp_proxy)  # accepted, but never reaches the server
    new.sendall(b"new")
    old.settimeout(0.5)
    with pytest.raises(TimeoutError):
        old.recv(1)
    assert tcp_proxy.open_connections() == 3
    assert echo.connections == 1 and echo.ended == 0
    tcp_proxy.set_mode(Mode.PASS)
    old.settimeout(5)
    assert receive(old, 2) == b"bc"
    assert receive(new, 3) == b"new"
    assert wait_until(lambda: echo.connections == 3, 5)
    old.close()
    new.close()
    assert wait_until(lambda: echo.ended == 3, 5)
