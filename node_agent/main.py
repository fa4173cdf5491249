"""``lockerfleet-agent agent``: run one locker's agent until SIGINT/SIGTERM, or until an update needs a restart into
another slot (then the process exits and systemd starts the new slot; the ``sim`` shim restarts in-process)."""

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable

from node_agent.agent import Agent, run_restarting
from node_agent.board import BoardProfile
from node_agent.controller_key import ControllerKeyError
from node_agent.hardware import Hardware, HardwareError
from node_agent.ota import RunOutcome
from node_agent.settings import AgentSettings
from node_agent.sim import SimulatedBoard
from schemas.logs import configure

log = logging.getLogger(__name__)


def build_hardware(profile: BoardProfile) -> Hardware:
    """Real devices for a real profile; for a sim profile a simulated board (mock pins, modelled battery) whose doors
    open when their relay fires and close after a while, as ``sim``'s do (so opens succeed and it can serve
    reservations). Raises :class:`HardwareError` when the devices can't be set up."""
    if profile.battery.kind == "sim" or profile.temperature.kind == "sim":
        return SimulatedBoard(profile, schedule=_on_running_loop).hardware
    return Hardware(profile)


def _on_running_loop(delay_s: float, fn: Callable[[], None]) -> asyncio.TimerHandle | None:
    """Door timers on the agent's loop, where relays fire; without a running loop (shutdown) a door stays put."""
    try:
        return asyncio.get_running_loop().call_later(delay_s, fn)
    except RuntimeError:
        return None


async def _serve(build: Callable[[], Agent], started: Callable[[Agent], None]) -> RunOutcome | None:
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        return await run_restarting(build, started)
    return None


def run_agent(settings: AgentSettings) -> int:
    """Load this locker's board profile, build the hardware and serve; exit code 0 on a clean stop, 2 on a bad start.

    A locker never falls back to the simulated board: without a board profile it refuses to start.
    """
    configure()
    if settings.board_profile is None:
        log.error(
            "cannot start: no board profile action=set --board-profile or LOCKERFLEET_BOARD_PROFILE to this locker's "
            "TOML (examples in node_agent/profiles; sim-locker-8.toml runs on mock pins)"
        )
        return 2
    try:
        profile = BoardProfile.from_toml(settings.board_profile)
    except ValueError as exc:
        log.error("cannot start: %s action=fix the board profile", exc)
        return 2
    try:
        hardware = build_hardware(profile)
    except HardwareError as exc:
        log.error("cannot start: board profile %s: %s", settings.board_profile, exc)
        return 2
    try:
        first = Agent(settings, hardware)
    except ControllerKeyError as exc:
        hardware.close()
        log.error("cannot start: %s action=fix --controller-key-file (or unset it to pin on first use)", exc)
        return 2
    waiting, running = [first], [first]

    def build() -> Agent:
        """The agent built above, then (an in-process restart) a new one on fresh hardware."""
        return waiting.pop() if waiting else Agent(settings, build_hardware(profile))

    try:
        outcome = asyncio.run(_serve(build, running.append))
    finally:
        running[-1].close()
    if outcome is RunOutcome.RESTART:
        log.info("agent exiting to restart node=%s action=none: the supervisor starts the new slot", settings.node_id)
    else:
        log.info("agent stopped node=%s", settings.node_id)
    return 0
