"""A TCP proxy the test controls, to cut one client off from a real server (the chaos suite's network).

The proxy listens on a free port of 127.0.0.1 and forwards every connection to one target. The test switches its
mode at run time, for every connection at once:

- ``pass``: bytes flow both ways as they come;
- ``delay``: each chunk read is held ``delay_ms`` before it is written on (per direction, order kept);
- ``drop``: every connection is reset (RST, no FIN) and new ones are refused (the port stops listening);
- ``black_hole``: connections stay open and new ones are accepted, but nothing moves in either direction, not even
  a close: the proxy stops reading, so what either side sends waits in the kernel's buffers, as in a network that
  loses every packet. Only keep-alive timeouts on both sides notice. Leaving the black hole for ``pass`` or
  ``delay`` lets the held bytes through, in order, like TCP retransmitting after a partition heals; new connections
  accepted meanwhile reach the target then.

Runs its own event loop in a daemon thread; every method is called from the test's thread.
"""

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Self, TypeVar

from controller.devstack.services import free_port

CHUNK = 65536
T = TypeVar("T")


class Mode(StrEnum):
    """What the proxy does with the traffic."""

    PASS = "pass"
    DELAY = "delay"
    DROP = "drop"
    BLACK_HOLE = "black_hole"


@dataclass
class ProxyCounts:
    """What the proxy saw since it started."""

    accepted: int = 0
    """Client connections accepted."""
    reset: int = 0
    """Connections reset by ``drop``."""
    upstream_failed: int = 0
    """Connections whose target refused or failed to connect."""
    bytes_up: int = 0
    """Bytes forwarded client → target."""
    bytes_down: int = 0
    """Bytes forwarded target → client."""


class _Pair:
    """One client connection and its connection to the target."""

    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.target: asyncio.StreamWriter | None = None
        self.task = asyncio.current_task()
        """The connection's handler (waiting out a black hole, then forwarding): cancelled by a reset."""

    def writers(self) -> list[asyncio.StreamWriter]:
        return [w for w in (self.client, self.target) if w is not None]


class TcpProxy:
    """Forwards ``127.0.0.1:port`` to ``target_host:target_port``; switch modes with :meth:`set_mode`."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.port = free_port()
        self.mode = Mode.PASS
        self.delay_ms = 0.0
        self.counts = ProxyCounts()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"tcp-proxy-{self.port}", daemon=True)
        self._server: asyncio.Server | None = None
        self._pairs: set[_Pair] = set()
        self._flowing: asyncio.Event | None = None  # set while not in a black hole

    @property
    def url_netloc(self) -> str:
        """``127.0.0.1:<port>``: where clients connect instead of the target."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> Self:
        """Start listening (in ``pass`` mode)."""
        self._thread.start()
        self._run(self._start())
        return self

    def set_mode(self, mode: Mode, delay_ms: float = 0.0) -> None:
        """Switch every connection to ``mode`` (``delay_ms`` for ``delay``); returns once the switch took effect."""
        if mode is Mode.DELAY and delay_ms <= 0:
            raise ValueError("delay mode needs delay_ms > 0")
        self._run(self._set_mode(mode, delay_ms))

    def open_connections(self) -> int:
        """Client connections the proxy holds now."""
        return self._run(self._count())

    def stop(self) -> None:
        """Reset every connection, stop listening and end the thread."""
        if not self._thread.is_alive():
            return
        self._run(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # -- on the proxy's loop ----------------------------------------------------------------------------------

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    async def _start(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        await self._listen()

    async def _shutdown(self) -> None:
        tasks = [p.task for p in self._pairs if p.task is not None]
        await self._set_mode(Mode.DROP, 0.0)
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _count(self) -> int:
        return len(self._pairs)

    async def _listen(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port, reuse_address=True)

    async def _set_mode(self, mode: Mode, delay_ms: float) -> None:
        assert self._flowing is not None
        self.mode, self.delay_ms = mode, delay_ms
        if mode is Mode.DROP:
            if self._server is not None:
                self._server.close()  # new connections are refused; existing ones are reset below
                await self._server.wait_closed()
                self._server = None
            for pair in list(self._pairs):
                self._reset(pair)
            return
        await self._listen()
        if mode is Mode.BLACK_HOLE:
            self._flowing.clear()
        else:
            self._flowing.set()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        if self.mode is Mode.DROP:  # accepted just before the listener closed
            _abort(writer)
            return
        pair = _Pair(writer)
        self._pairs.add(pair)
        self.counts.accepted += 1
        try:
            await self._flowing.wait()  # a black hole accepts, then says nothing
            try:
                target_reader, target = await asyncio.open_connection(self.target_host, self.target_port)
            except OSError:
                self.counts.upstream_failed += 1
                _abort(writer)
                return
            pair.target = target
            await asyncio.gather(self._pump(reader, target, up=True), self._pump(target_reader, writer, up=False))
        except asyncio.CancelledError:
            pass  # reset by drop: the handler task ends quietly (asyncio logs a cancelled connection handler)
        finally:
            self._pairs.discard(pair)
            for w in pair.writers():
                w.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, up: bool) -> None:
        """Move bytes one way; an end of stream (FIN) is passed on as one, an error ends both directions."""
        assert self._flowing is not None
        try:
            while True:
                await self._flowing.wait()
                chunk = await reader.read(CHUNK)
                await self._flowing.wait()  # read just before a black hole: held until it ends
                if self.mode is Mode.DELAY:
                    await asyncio.sleep(self.delay_ms / 1000)
                    await self._flowing.wait()
                if not chunk:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(chunk)
                await writer.drain()
                if up:
                    self.counts.bytes_up += len(chunk)
                else:
                    self.counts.bytes_down += len(chunk)
        except OSError:
            _abort(writer)

    def _reset(self, pair: _Pair) -> None:
        for w in pair.writers():
            _abort(w)
        if pair.task is not None:
            pair.task.cancel()
        self._pairs.discard(pair)
        self.counts.reset += 1


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close with an RST: SO_LINGER 0 then close, so the peer sees ``connection reset``, not an orderly end."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
