"""Domain errors and refusals mapped to HTTP answers (every 4xx/5xx body is an :class:`ApiError`)."""

import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from controller.api.models import ApiError
from controller.commands.opens import OpenRefusedError, Refusal
from controller.commands.rate_limit import RateLimitedError
from controller.reservations.cancel import NotCancellableError

OPEN_STATUS = {
    Refusal.UNKNOWN_NODE: 404,
    Refusal.UNKNOWN_COMPARTMENT: 404,
    Refusal.NODE_OFFLINE: 409,
    Refusal.BROKER_DOWN: 503,
    Refusal.RATE_LIMITED: 429,
    Refusal.REJECTED: 409,
    Refusal.NO_ANSWER: 504,
    Refusal.EXPIRED: 504,
    Refusal.FAILED: 502,
}
"""HTTP status of each reason an open did not drive the door."""

OPEN_ERRORS: dict[int | str, dict[str, object]] = {
    404: {"model": ApiError, "description": "Unknown node or compartment (or reservation)."},
    409: {"model": ApiError, "description": "The node is offline, or refused the command (nothing to open now)."},
    429: {"model": ApiError, "description": "Open rate limit reached; see Retry-After."},
    502: {"model": ApiError, "description": "The node could not drive the lock (hardware fault, crash)."},
    503: {"model": ApiError, "description": "The controller has lost the broker: nothing can reach a node now."},
    504: {"model": ApiError, "description": "No answer in time; the command expires and never runs."},
}
"""OpenAPI description of an open's error answers."""


def install(app: FastAPI) -> None:
    """Register the handlers that turn domain errors into JSON error answers."""
    app.add_exception_handler(OpenRefusedError, _open_refused)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(RateLimitedError, _rate_limited)
    app.add_exception_handler(NotCancellableError, _not_cancellable)


def _retry_after(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


async def _open_refused(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, OpenRefusedError)
    body = ApiError(detail=exc.detail, command_id=exc.command_id).model_dump(exclude_none=True)
    headers = _retry_after(exc.retry_after_s) if exc.retry_after_s is not None else None
    return JSONResponse(body, status_code=OPEN_STATUS[exc.refusal], headers=headers)


async def _rate_limited(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RateLimitedError)
    body = ApiError(detail=str(exc)).model_dump(exclude_none=True)
    return JSONResponse(body, status_code=429, headers=_retry_after(exc.retry_after_s))


async def _not_cancellable(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, NotCancellableError)
    return JSONResponse(ApiError(detail=str(exc)).model_dump(exclude_none=True), status_code=409)


async def _invalid_request(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    unreadable = next((e for e in exc.errors() if e["type"] == "json_invalid"), None)
    if unreadable is not None:
        detail = f"request body is not valid JSON: {_json_problem(unreadable, exc.body)}"
        return JSONResponse(ApiError(detail=detail).model_dump(exclude_none=True), status_code=400)
    problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
    return JSONResponse(ApiError(detail=f"invalid request: {problems}").model_dump(exclude_none=True), status_code=422)


def _json_problem(error: Any, body: object) -> str:
    """``Expecting value at line 1, column 9`` from FastAPI's ``json_invalid`` error (its loc is a char offset)."""
    reason = str(error.get("ctx", {}).get("error", "cannot be parsed"))
    position = error["loc"][-1]
    if not isinstance(body, str) or not isinstance(position, int):
        return reason
    line = body.count("\n", 0, position) + 1
    column = position - (body.rfind("\n", 0, position) + 1) + 1
    return f"{reason} at line {line}, column {column}"
