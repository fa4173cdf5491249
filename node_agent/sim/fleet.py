"""``lockerfleet sim``: many real agents in one process, each with its own simulated board and MQTT link.

Each node is a full :class:`~node_agent.agent.Agent` (journal, outbox, link) on a fresh gpiozero
``MockFactory`` whose pins are driven by simple physics: batteries drain and charge, temperature follows a
daily cycle, doors open when their relay fires and close after a dwell, and a share of doors is jammed.
"""

import asyncio
import contextlib
import logging
import random
import resource
import signal
import threading
from collections.abc import Callable, Iterator

from node_agent.agent import Agent
from node_agent.board import BoardProfile, default_sim_profile
from node_agent.settings import AgentSettings, SimSettings
from node_agent.sim import SimulatedBoard
from schemas.broker import redact_url
from schemas.logs import configure

log = logging.getLogger(__name__)

PHYSICS_STEP_S = 1.0


class SimFleet:
    """The simulated nodes of one process: their boards and agents."""

    def __init__(self, settings: SimSettings, schedule: Callable[[float, Callable[[], None]], object]) -> None:
        profile: BoardProfile = (
            BoardProfile.from_toml(settings.board_profile) if settings.board_profile else default_sim_profile()
        )
        rng = random.Random(settings.seed)
        self.settings = settings
        self.loop: asyncio.AbstractEventLoop | None = None
        """The loop the agents run on (set by :meth:`run`): where to call an agent from another thread."""
        self.boards: list[SimulatedBoard] = []
        self.agents: list[Agent] = []
        for i in range(settings.nodes):
            node_id = f"{settings.node_prefix}-{i:04d}"
            board = SimulatedBoard(
                profile,
                rng=random.Random(rng.random()),
                schedule=schedule,
                jam_share=settings.jam_share,
                door_dwell_s=settings.door_dwell_s,
                power_source=settings.power_source,
            )
            agent_settings = AgentSettings(
                node_id=node_id,
                mqtt_url=settings.mqtt_url,
                data_dir=settings.data_dir / node_id,
                telemetry_interval_s=settings.telemetry_interval_s,
                site=settings.sites[i % len(settings.sites)] if settings.sites else None,
            )
            self.boards.append(board)
            self.agents.append(Agent(agent_settings, board.hardware))

    @property
    def online(self) -> int:
        """Nodes whose link is connected right now."""
        return sum(1 for a in self.agents if a.link.connected)

    async def run(self) -> None:
        """Start every agent (spread over ``ramp_s``) and step the physics, until cancelled."""
        self.loop = asyncio.get_running_loop()
        async with asyncio.TaskGroup() as group:
            group.create_task(self._physics())
            gap = self.settings.ramp_s / max(1, len(self.agents))
            for agent in self.agents:
                group.create_task(agent.run())
                await asyncio.sleep(gap)

    async def _physics(self) -> None:
        while True:
            await asyncio.sleep(PHYSICS_STEP_S)
            for board in self.boards:
                board.step(PHYSICS_STEP_S)

    def close(self) -> None:
        """Close every agent's stores and hardware."""
        for agent in self.agents:
            agent.close()


async def _serve(settings: SimSettings) -> None:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    fleet = SimFleet(settings, loop.call_later)
    log.info(
        "simulator starting nodes=%d broker=%s data=%s",
        settings.nodes,
        redact_url(settings.mqtt_url),
        settings.data_dir,
    )
    try:
        async with asyncio.timeout(settings.duration_s):
            await fleet.run()
    except TimeoutError:
        log.info("simulator duration reached seconds=%s", settings.duration_s)
    finally:
        fleet.close()


@contextlib.contextmanager
def background_fleet(settings: SimSettings) -> Iterator[SimFleet]:
    """Run a fleet on its own event loop thread (physics schedules on that loop); stop and close it on exit."""
    loop = asyncio.new_event_loop()
    built: list[SimFleet] = []
    ready = threading.Event()

    async def main() -> None:
        fleet = SimFleet(settings, loop.call_later)
        built.append(fleet)
        ready.set()
        await fleet.run()

    task = loop.create_task(main())
    thread = threading.Thread(target=_run_until_cancelled, args=(loop, task), name="sim-fleet", daemon=True)
    thread.start()
    if not ready.wait(30):
        raise RuntimeError("the simulated fleet did not start within 30 s")
    try:
        yield built[0]
    finally:
        loop.call_soon_threadsafe(task.cancel)
        thread.join(15)
        built[0].close()


def _run_until_cancelled(loop: asyncio.AbstractEventLoop, task: "asyncio.Task[None]") -> None:
    with contextlib.suppress(asyncio.CancelledError):
        loop.run_until_complete(task)
    loop.close()


def _raise_open_file_limit() -> None:
    """Each node holds a socket and two SQLite files (with WAL): lift the soft descriptor limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def run_sim(settings: SimSettings) -> int:
    """Run the simulated fleet until Ctrl-C, SIGTERM or ``duration_s``."""
    configure()
    _raise_open_file_limit()
    with contextlib.suppress(asyncio.CancelledError):
        asyncio.run(_serve(settings))
    return 0
