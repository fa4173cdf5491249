"""Resumable artifact download over HTTP: Range requests from what is durably on disk, cut off at the manifest's size.

The partial file is fsynced every :data:`SYNC_EVERY` bytes and that durable length is recorded next to it, so after a
power cut the download resumes from bytes known to be on disk (a tail of unsynced garbage is cut off first). Whether
the bytes are the artifact is decided afterwards by :func:`schemas.release.verify_artifact` (size and sha256).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, BinaryIO, Final

from node_agent.ota.store import write_atomically

if TYPE_CHECKING:
    import httpx

SYNC_EVERY: Final = 4 * 1024 * 1024
CHUNK: Final = 64 * 1024
PERMANENT_STATUS: Final = frozenset({400, 401, 403, 404, 405, 410, 451})
"""Answers that another try of the same URL will not change."""


class DownloadError(RuntimeError):
    """The download stopped; ``retryable`` tells whether resuming later may succeed."""

    def __init__(self, detail: str, *, retryable: bool) -> None:
        super().__init__(detail)
        self.retryable = retryable


def durable_length(dest: Path) -> int:
    """Bytes of ``dest`` known to be on disk; the file is cut to that length."""
    marker = _marker(dest)
    try:
        recorded = int(marker.read_text())
    except (FileNotFoundError, ValueError):
        recorded = 0
    if not dest.exists():
        return 0
    length = min(recorded, dest.stat().st_size)
    with dest.open("r+b") as file:
        file.truncate(length)
    return length


def forget(dest: Path) -> None:
    """Delete a download and its durable-length record."""
    dest.unlink(missing_ok=True)
    _marker(dest).unlink(missing_ok=True)


async def download(
    client: httpx.AsyncClient,
    urls: Sequence[str],
    dest: Path,
    size: int,
    on_progress: Callable[[int], None] = lambda done: None,
) -> None:
    """Complete ``dest`` to ``size`` bytes from the first of ``urls`` that serves it; :class:`DownloadError` if none.

    A permanent error on every URL is permanent; any transient one makes the whole attempt retryable.
    """
    errors: list[DownloadError] = []
    for url in urls:
        try:
            await _fetch(client, url, dest, size, on_progress)
            return
        except DownloadError as exc:
            errors.append(exc)
    if not errors:
        raise DownloadError("the update names no artifact URL", retryable=False)
    detail = "; ".join(str(e) for e in errors)
    raise DownloadError(detail[:240], retryable=any(e.retryable for e in errors))


Progressed = Callable[[int], None]


async def _fetch(client: httpx.AsyncClient, url: str, dest: Path, size: int, on_progress: Progressed) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    have = durable_length(dest)
    if have >= size:
        return
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        async with client.stream("GET", url, headers=headers) as response:
            start = _start_offset(response, url, have)
            with dest.open("r+b" if dest.exists() else "wb") as out:
                out.truncate(start)
                out.seek(start)
                await _copy(response, out, dest, start, size, url, on_progress)
    except _httpx().HTTPError as exc:
        raise DownloadError(f"{url}: {type(exc).__name__}: {exc}", retryable=True) from exc


def _start_offset(response: httpx.Response, url: str, have: int) -> int:
    if response.status_code == HTTP_PARTIAL_CONTENT:
        first = response.headers.get("content-range", "").removeprefix("bytes ").split("-")[0]
        if first != str(have):
            raise DownloadError(f"{url}: asked from byte {have}, got range {first or '?'}", retryable=True)
        return have
    if response.status_code == HTTP_OK:
        return 0  # the server ignores ranges: start over
    retryable = response.status_code not in PERMANENT_STATUS
    raise DownloadError(f"{url}: HTTP {response.status_code}", retryable=retryable)


async def _copy(
    response: httpx.Response,
    out: BinaryIO,
    dest: Path,
    done: int,
    size: int,
    url: str,
    on_progress: Callable[[int], None],
) -> None:
    synced = done
    async for chunk in response.aiter_bytes(CHUNK):
        if done + len(chunk) > size:
            raise DownloadError(f"{url}: sends more than the manifest's {size} bytes", retryable=False)
        out.write(chunk)
        done += len(chunk)
        if done - synced >= SYNC_EVERY:
            synced = _sync(out, dest, done)
        on_progress(done)
    _sync(out, dest, done)
    if done < size:
        raise DownloadError(f"{url}: stream ended at byte {done} of {size}", retryable=True)


def _sync(out: BinaryIO, dest: Path, done: int) -> int:
    out.flush()
    os.fsync(out.fileno())
    write_atomically(_marker(dest), str(done).encode())
    return done


def _marker(dest: Path) -> Path:
    return dest.with_name(f"{dest.name}.durable")


HTTP_OK = 200
HTTP_PARTIAL_CONTENT = 206


def _httpx() -> ModuleType:
    """httpx, imported when a download runs: a locker that is not updating does not carry it (~8 MiB)."""
    import httpx  # noqa: PLC0415

    return httpx
