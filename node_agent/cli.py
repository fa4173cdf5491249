"""The ``lockerfleet-agent`` console command (a locker's): ``agent`` and ``sim``, both needing the agent extra."""

import sys

from pydantic_settings import BaseSettings

from node_agent.settings import AgentSettings, SimSettings
from schemas.cli import Command, parse_command_name, run_command


def _run_agent(settings: BaseSettings) -> int:
    from node_agent.main import run_agent  # noqa: PLC0415 - loads aiomqtt and gpiozero, checked first

    assert isinstance(settings, AgentSettings)
    return run_agent(settings)


def _run_sim(settings: BaseSettings) -> int:
    from node_agent.sim.fleet import run_sim  # noqa: PLC0415

    assert isinstance(settings, SimSettings)
    return run_sim(settings)


COMMANDS: dict[str, Command] = {
    "agent": Command("run the agent of one locker", AgentSettings, _run_agent, ("agent",)),
    "sim": Command("run a simulated fleet of agents on mock pins", SimSettings, _run_sim, ("agent",)),
}


def main(argv: list[str] | None = None, prog: str = "lockerfleet-agent") -> int:
    """Dispatch ``lockerfleet-agent <command> [--flags]``; flags after the command belong to its settings."""
    args = sys.argv[1:] if argv is None else argv
    choices = {name: command.description for name, command in COMMANDS.items()}
    name = parse_command_name(prog, "The agent of a lockerfleet parcel locker.", choices, args)
    if name is None:
        return 2
    return run_command(prog, name, COMMANDS[name], args[1:])
