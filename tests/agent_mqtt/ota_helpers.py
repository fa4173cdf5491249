"""Helpers for update tests through a real broker: signed releases published on the controller's releases router
(served by uvicorn in a thread, optionally throttled), signed update commands, an agent thread that restarts
in-process like the ``sim`` shim asks, and reading ``ota`` events back."""

import asyncio
import contextlib
import socket
import threading
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import uvicorn
from fastapi import FastAPI

from controller.releases.catalog import publish
from controller.releases.http import artifact_path, releases_router
from node_agent.agent import Agent, run_restarting
from node_agent.ota import Progress
from node_agent.ota.shims import SimShim
from node_agent.sim.ota import factory_install
from schemas import Channel, OtaEvent, OtaState, SignedRelease, UpdateCommand, decode
from schemas.command_trust import sign_command
from schemas.semver import SemVer
from tests.agent.ota.releases import TRUSTED, artifact, signed
from tests.harness.mqtt import Delivered, wait_until
from tests.samples import COMMAND_KEY

START_VERSION = "1.0.0"
T = TypeVar("T")


class ArtifactServer:
    """The controller's ``/v1/releases`` router over ``releases_dir`` on a free port; ``chunk_delay_s`` slows each
    body chunk (64 KiB) so a download can be caught halfway. Every ``Range`` header asked for is kept."""

    def __init__(self, releases_dir: Path, chunk_delay_s: float = 0.0) -> None:
        self.releases_dir = releases_dir
        self.chunk_delay_s = chunk_delay_s
        self.ranges: list[str | None] = []
        app = FastAPI()
        app.include_router(releases_router(releases_dir))
        self._app = app
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        config = uvicorn.Config(self._asgi, log_config=None, access_log=False, lifespan="off", interface="asgi3")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True)

    async def _asgi(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            self.ranges.append(headers[b"range"].decode() if b"range" in headers else None)

        async def slow_send(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.body" and self.chunk_delay_s:
                await asyncio.sleep(self.chunk_delay_s)
            await send(message)

        await self._app(scope, receive, slow_send)

    def start(self) -> "ArtifactServer":
        self._thread.start()
        assert wait_until(lambda: self._server.started, 5), "the artifact server did not start"
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)

    def publish(self, version: str, hardware_model: str, files: dict[str, bytes] | None = None) -> SignedRelease:
        """Sign and publish ``version`` (an artifact of ``files``) for ``hardware_model``, valid 30 days from now."""
        data = artifact(version, files)
        expires = _whole_seconds(datetime.now(UTC) + timedelta(days=30))
        release = signed(version, data, hardware=hardware_model, expires=expires)
        staged = self.releases_dir.parent / f"upload-{version}.tar.gz"
        staged.write_bytes(data)
        publish(release, staged, self.releases_dir)
        return release

    def url(self, version: str) -> str:
        return f"http://127.0.0.1:{self.port}{artifact_path(SemVer.parse(version))}"


def _whole_seconds(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)


def update_command(
    node_id: str, release: SignedRelease, urls: tuple[str, ...], command_id: str = "up-1"
) -> UpdateCommand:
    """An update command as the controller sends it: signed with the test command key."""
    now = datetime.now(UTC)
    command = UpdateCommand(
        command_id=command_id,
        node_id=node_id,
        issued_at=now - timedelta(seconds=1),
        expires_at=now + timedelta(hours=1),
        rollout_id="ro-1",
        release=release,
        artifact_urls=urls,
    )
    return sign_command(command, COMMAND_KEY)


def provision(data_dir: Path) -> SimShim:
    """A node's disk as it leaves the factory: pinned release keys and a committed slot of :data:`START_VERSION`."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    (data_dir / "trusted_keys.json").write_text(TRUSTED.model_dump_json())
    shim = SimShim(data_dir / "slots")
    factory_install(shim, START_VERSION)
    return shim


def ota_events(deliveries: list[Delivered], command_id: str = "up-1") -> list[OtaEvent]:
    """The node's ``ota`` events of ``command_id`` in the order it made them: QoS 1 redelivers what a restart cut
    off before its PUBACK, so duplicates are dropped by (boot_id, seq) and the rest sorted by it."""
    events = [decode(Channel.EVENT, d.payload) for d in deliveries if d.topic.endswith("/event")]
    unique = {(e.boot_id, e.seq): e for e in events if isinstance(e, OtaEvent) and e.command_id == command_id}
    return [unique[key] for key in sorted(unique)]


def final_event(deliveries: list[Delivered], command_id: str = "up-1") -> OtaEvent | None:
    return next((e for e in ota_events(deliveries, command_id) if e.final), None)


def compact(steps: list[T]) -> list[T]:
    """``steps`` with repeats in a row folded (download progress, deferral polls)."""
    return [s for i, s in enumerate(steps) if i == 0 or steps[i - 1] != s]


@dataclass(frozen=True)
class Published:
    """One progress report at the moment the agent queued it, with the platform's slots then."""

    state: OtaState
    reason: str | None
    current: str | None
    trial: str | None


@dataclass
class RestartingAgent:
    """Agents built by ``build`` on their own loop thread, restarted in-process whenever an update asks."""

    build: Callable[[], Agent]
    agents: list[Agent] = field(default_factory=list)
    published: list[Published] = field(default_factory=list)
    """Every report, as the agent queued it (to check what the slots were at that moment)."""

    def __post_init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._task: asyncio.Task[Any] | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)

    def _started(self, agent: Agent) -> None:
        publish_ota = agent.publish_ota
        shim = agent.updates.shim

        def watched(report: Progress) -> None:
            self.published.append(Published(report.state, report.reason, shim.current(), shim.trial()))
            publish_ota(report)

        agent.publish_ota = watched  # type: ignore[method-assign]
        self.agents.append(agent)

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self._task = self.loop.create_task(run_restarting(self.build, self._started))
        with contextlib.suppress(asyncio.CancelledError):
            self.loop.run_until_complete(self._task)
        self.loop.close()

    def start(self) -> "RestartingAgent":
        self._thread.start()
        return self

    @property
    def agent(self) -> Agent:
        return self.agents[-1]

    def stop(self) -> None:
        if self._task is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(10)
        for agent in self.agents:
            agent.close()


@contextlib.contextmanager
def running(build: Callable[[], Agent]) -> Iterator[RestartingAgent]:
    runner = RestartingAgent(build).start()
    try:
        yield runner
    finally:
        runner.stop()
