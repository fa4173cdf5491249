"""How the InfluxDB writer reacts to each answer: retry with Retry-After, back off on 5xx, never retry a 400."""

import gzip
import time

import httpx
import pytest

from controller.influx.writer import InfluxRefusedError, InfluxWriter


class ScriptedInflux:
    """An HTTP transport answering /write from a script of (status, headers) and recording each request."""

    def __init__(self, *answers: tuple[int, dict[str, str]]) -> None:
        self.answers = list(answers)
        self.requests: list[tuple[float, httpx.Request]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append((time.monotonic(), request))
        status, headers = self.answers.pop(0) if self.answers else (204, {})
        return httpx.Response(status, headers=headers, text="" if status == 204 else "scripted error")


def writer_for(script: ScriptedInflux, retries: list[BaseException], token: str | None = None) -> InfluxWriter:
    return InfluxWriter(
        "http://influx.test",
        "fleet",
        token,
        max_backoff_s=0.05,
        on_retry=retries.append,
        transport=httpx.MockTransport(script),
    )


def test_429_waits_for_retry_after_then_stores() -> None:
    script = ScriptedInflux((429, {"Retry-After": "1"}), (204, {}))
    retries: list[BaseException] = []
    writer_for(script, retries, token="s3cret").write(["m f=1i 1"])
    (first, request), (second, _) = script.requests
    assert second - first >= 0.95
    assert len(retries) == 1
    assert request.headers["Authorization"] == "Token s3cret"
    assert request.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(request.content) == b"m f=1i 1"
    assert request.url.params["db"] == "fleet" and request.url.params["precision"] == "ns"


def test_5xx_and_unreachable_are_retried_until_stored() -> None:
    script = ScriptedInflux((503, {}), (500, {}), (204, {}))
    retries: list[BaseException] = []
    writer_for(script, retries).write(["m f=1i 1"])
    assert len(script.requests) == 3 and len(retries) == 2


def test_400_is_reported_not_retried() -> None:
    script = ScriptedInflux((400, {}))
    retries: list[BaseException] = []
    with pytest.raises(InfluxRefusedError, match="400"):
        writer_for(script, retries).write(["m f=1i 1"])
    assert len(script.requests) == 1 and retries == []
