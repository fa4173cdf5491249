"""TLS over a connected socket for one reader thread and any number of writer threads (the ingest session).

An ``ssl.SSLSocket`` must not be read and written from two threads at once. Here the TLS state lives in an
``SSLObject`` over two memory buffers: the reader waits on the raw socket without holding anything, and every
touch of the TLS state (feeding received bytes, encrypting a send) happens under one short lock.
"""

import socket
import ssl
import threading


class TlsChannel:
    """A client TLS session over ``sock``; the handshake happens in the constructor."""

    def __init__(self, sock: socket.socket, context: ssl.SSLContext, server_hostname: str) -> None:
        self._sock = sock
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_hostname=server_hostname)
        self._lock = threading.Lock()
        while True:
            try:
                self._tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                self._feed(self._sock.recv(1 << 16))
        self._flush()

    def sendall(self, data: bytes) -> None:
        """Encrypt and send ``data`` (safe from any thread)."""
        with self._lock:
            self._tls.write(data)
            self._flush()

    def recv(self, size: int) -> bytes:
        """Decrypted bytes, at least one unless the broker closed the connection (then ``b""``).

        Raises the socket's ``TimeoutError`` when nothing arrives in time, like a plain socket.
        """
        while True:
            raw = self._sock.recv(size)
            if not raw:
                return b""
            with self._lock:
                self._incoming.write(raw)
                plain = self._read_available(size)
                self._flush()  # TLS 1.3 may answer on its own (key updates)
            if plain is None:
                return b""  # the broker closed the TLS session
            if plain:
                return plain

    def shutdown(self, how: int) -> None:
        """Shut the underlying socket down."""
        self._sock.shutdown(how)

    def close(self) -> None:
        """Close the underlying socket."""
        self._sock.close()

    def _read_available(self, size: int) -> bytes | None:
        chunks: list[bytes] = []
        while True:
            try:
                chunk = self._tls.read(size)
            except ssl.SSLWantReadError:
                return b"".join(chunks)
            except ssl.SSLZeroReturnError:
                return None
            if not chunk:
                return None
            chunks.append(chunk)

    def _feed(self, raw: bytes) -> None:
        if not raw:
            raise ConnectionResetError("the broker closed the connection during the TLS handshake")
        self._incoming.write(raw)

    def _flush(self) -> None:
        pending = self._outgoing.read()
        if pending:
            self._sock.sendall(pending)
