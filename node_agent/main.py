"""``lockerfleet agent``: run one locker's agent until SIGINT/SIGTERM."""

import asyncio
import contextlib
import logging
import signal

from node_agent.agent import Agent
from node_agent.board import BoardProfile, default_sim_profile
from node_agent.hardware import Hardware
from node_agent.logs import configure
from node_agent.settings import AgentSettings
from node_agent.sim import SimulatedBoard

log = logging.getLogger(__name__)


def build_hardware(profile: BoardProfile) -> Hardware:
    """Real devices for a real profile; a simulated board (mock pins, modelled battery) for a sim profile."""
    if profile.battery.kind == "sim" or profile.temperature.kind == "sim":
        return SimulatedBoard(profile).hardware
    return Hardware(profile)


async def _serve(agent: Agent) -> None:
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await agent.run()


def run_agent(settings: AgentSettings) -> int:
    """Load the board profile, build the hardware and serve; exit code 0 on a clean stop."""
    configure()
    try:
        profile = BoardProfile.from_toml(settings.board_profile) if settings.board_profile else default_sim_profile()
    except ValueError as exc:
        log.error("cannot start: %s action=fix the board profile", exc)
        return 2
    agent = Agent(settings, build_hardware(profile))
    try:
        asyncio.run(_serve(agent))
    finally:
        agent.close()
        log.info("agent stopped node=%s", settings.node_id)
    return 0
