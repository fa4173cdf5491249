"""What every API request passes before a route reads its body: a size cap, a valid key, a failed-login limit.

An ASGI middleware, so nothing is buffered or parsed for a caller without a key: a request to ``/v1/…`` with no
valid key (of any kind; the route then checks the kind) is answered 401 before its body is read, and a client
address that keeps failing is answered 429 for a while. A body larger than the cap is answered 413 whether it
declares its length or streams it. The key found is handed to the route (:func:`authenticated`), which looks
nothing up again.
"""

import json
import logging
import re
import time
from collections.abc import Callable

import anyio.to_thread
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from controller.commands.rate_limit import KeyedLimits
from controller.log_throttle import Throttle

log = logging.getLogger(__name__)

GUARDED_PREFIX = "/v1/"
_KEY_STATE = "api_key"
"""Where the guard leaves the key it found, in the request's state."""


def authenticated(request: Request) -> object | None:
    """The key (of any kind) the guard found for this request; None when no guard ran (the route looks it up)."""
    return getattr(request.state, _KEY_STATE, None)


class RequestGuard:
    """Caps bodies, and authenticates ``/v1/`` requests before the app reads them."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        authenticate: Callable[[str], object | None],
        max_body_bytes: int,
        failed_auth_per_min: float,
        failed_auth_burst: int,
        unguarded: re.Pattern[str] | None = None,
    ) -> None:
        """``unguarded`` matches ``/v1/`` paths that need no key (release artifacts: nodes hold no API key)."""
        self.app = app
        self._unguarded = unguarded
        self._authenticate = authenticate
        self._max_body_bytes = max_body_bytes
        self._failures = KeyedLimits(failed_auth_per_min / 60, failed_auth_burst)
        self._failure_log = Throttle(60.0)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self._max_body_bytes):
            await _answer(send, 413, f"request body over {self._max_body_bytes} bytes")
            return
        path = scope["path"]
        if path.startswith(GUARDED_PREFIX) and not (self._unguarded and self._unguarded.fullmatch(path)):
            refusal = await self._check_key(scope, headers.get(b"authorization", b""))
            if refusal is not None:
                await _answer(send, *refusal)
                return
        await self._capped(scope, receive, send)

    async def _check_key(self, scope: Scope, authorization: bytes) -> tuple[int, str, dict[str, str]] | None:
        client = scope["client"][0] if scope.get("client") else "unknown"
        scheme, _, token = authorization.decode("latin-1").partition(" ")
        if scheme.lower() == "bearer" and token:
            key = await anyio.to_thread.run_sync(self._authenticate, token.strip())
            if key is not None:
                scope.setdefault("state", {})[_KEY_STATE] = key
                return None
        now = time.monotonic()
        wait_s = self._failures.take(client, now)
        held_back = self._failure_log.allow(client, now)
        if held_back is not None:
            log.warning(
                "request without a valid key client=%s path=%s held_back=%d action=if this keeps up from one address, "
                "block it at the proxy; a partner seeing 401 needs a new key (lockerfleet keys)",
                client,
                scope["path"],
                held_back,
            )
        if wait_s > 0:
            return (
                429,
                f"too many requests without a valid key; retry in {wait_s:.0f} s",
                {"Retry-After": str(max(1, round(wait_s)))},
            )
        detail = (
            "missing API key: send Authorization: Bearer <key> (an operator key for /v1/nodes, a courier partner's "
            "key for /v1/reservations)"
            if not token
            else "unknown or revoked API key"
        )
        return 401, detail, {"WWW-Authenticate": "Bearer"}

    async def _capped(self, scope: Scope, receive: Receive, send: Send) -> None:
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self._max_body_bytes:  # FastAPI passes HTTPException through as the answer
                    raise HTTPException(413, f"request body over {self._max_body_bytes} bytes")
            return message

        await self.app(scope, counting_receive, send)


async def _answer(send: Send, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
