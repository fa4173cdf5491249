"""The request guard: no body is read for a caller without a key, bodies are capped, failed logins are limited."""

import asyncio
from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI, Request

from controller.api.guard import RequestGuard, authenticated

GOOD = "lf_valid"
KEY = object()
"""What the guard's lookup returns for GOOD (a store's key record in the controller)."""


def guarded_app(read: list[int]) -> FastAPI:
    """An app whose only route counts the bytes it read; the guard sits in front as in the controller."""
    app = FastAPI()

    @app.post("/v1/things")
    async def things(request: Request) -> dict[str, int]:
        body = await request.body()
        read.append(len(body))
        return {"read": len(body)}

    @app.post("/v1/whoami")
    async def whoami(request: Request) -> dict[str, bool]:
        return {"guard_found_the_key": authenticated(request) is KEY}

    @app.post("/v1/parsed")
    async def parsed(thing: dict[str, str]) -> dict[str, int]:
        read.append(len(thing))
        return {"read": len(thing)}

    app.add_middleware(
        RequestGuard,
        authenticate=lambda token: KEY if token == GOOD else None,
        max_body_bytes=16_384,
        failed_auth_per_min=6,
        failed_auth_burst=3,
    )
    return app


async def stream(total: int, chunk: int = 65_536) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        yield b"x" * min(chunk, total - sent)
        sent += chunk


def call(app: FastAPI, *requests: tuple[str, dict[str, str], object]) -> list[httpx.Response]:
    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 5555))
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            return [await client.post(path, headers=headers, content=content) for path, headers, content in requests]  # type: ignore[arg-type]

    return asyncio.run(run())


def test_a_streamed_body_without_a_key_is_refused_before_a_byte_is_read() -> None:
    read: list[int] = []
    [answer] = call(guarded_app(read), ("/v1/things", {}, stream(50_000_000)))
    assert answer.status_code == 401 and answer.headers["WWW-Authenticate"] == "Bearer"
    assert read == []


def test_bodies_over_the_cap_get_413_whether_declared_or_streamed() -> None:
    read: list[int] = []
    auth = {"Authorization": f"Bearer {GOOD}"}
    declared, streamed, parsed, fine = call(
        guarded_app(read),
        ("/v1/things", auth, b"x" * 20_000),
        ("/v1/things", auth, stream(5_000_000, chunk=4096)),
        ("/v1/parsed", {**auth, "content-type": "application/json"}, stream(5_000_000, chunk=4096)),
        ("/v1/things", auth, b"x" * 16_000),
    )
    assert (declared.status_code, streamed.status_code, parsed.status_code) == (413, 413, 413)
    assert "16384" in streamed.json()["detail"]
    assert fine.status_code == 200 and read == [16_000]


def test_one_address_failing_to_authenticate_is_held_back_with_429() -> None:
    read: list[int] = []
    bad = {"Authorization": "Bearer lf_guess"}
    answers = call(guarded_app(read), *[("/v1/things", bad, b"{}")] * 5)
    assert [a.status_code for a in answers] == [401, 401, 401, 429, 429]
    assert int(answers[-1].headers["Retry-After"]) >= 1


def test_the_route_gets_the_key_the_guard_found_and_looks_nothing_up_again() -> None:
    [answer] = call(guarded_app([]), ("/v1/whoami", {"Authorization": f"Bearer {GOOD}"}, b""))
    assert answer.status_code == 200 and answer.json() == {"guard_found_the_key": True}
