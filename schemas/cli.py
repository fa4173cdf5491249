"""What both console scripts share: one subcommand per process kind, its settings, and the extra it needs.

A locker installs ``lockerfleet[agent]`` and the central service ``lockerfleet[controller]``; both get both console
scripts. A command whose extra is missing refuses at start with one line naming the extra to install (exit 2),
before anything imports the missing libraries.
"""

import argparse
import importlib.util
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from pydantic import ValidationError
from pydantic_settings import BaseSettings, CliApp, CliSettingsSource

EXTRA_MODULES: Final[dict[str, tuple[str, ...]]] = {
    "agent": ("aiomqtt", "paho", "gpiozero", "tenacity", "httpx"),
    "controller": ("fastapi", "uvicorn", "httpx", "prometheus_client", "sqlalchemy", "alembic", "paho", "tenacity"),
}
"""The modules each extra of the ``lockerfleet`` distribution installs (the same lists as pyproject.toml)."""


@dataclass(frozen=True)
class Command:
    """One subcommand: what it does, the settings it parses, what runs it, and the extras it needs."""

    description: str
    settings: type[BaseSettings]
    run: Callable[[BaseSettings], int]
    extras: tuple[str, ...]


def missing_extras(extras: Sequence[str]) -> list[str]:
    """The extras among ``extras`` with a module that is not installed."""
    return [
        extra for extra in extras if any(importlib.util.find_spec(module) is None for module in EXTRA_MODULES[extra])
    ]


def refusal(command: str, missing: Sequence[str]) -> str:
    """The one line telling which extra to install, e.g. ``lockerfleet controller needs the controller extra: …``."""
    names = " and ".join(missing)
    noun = "extra" if len(missing) == 1 else "extras"
    return f"{command} needs the {names} {noun}: pip install 'lockerfleet[{','.join(missing)}]'"


def run_command(prog: str, name: str, command: Command, args: Sequence[str]) -> int:
    """Check the command's extras, parse its settings from ``args`` and the environment, and run it."""
    missing = missing_extras(command.extras)
    if missing:
        print(refusal(f"{prog} {name}", missing), file=sys.stderr)
        return 2
    try:
        source: CliSettingsSource[BaseSettings] = CliSettingsSource(command.settings, cli_prog_name=f"{prog} {name}")
        settings = CliApp.run(command.settings, cli_args=list(args), cli_settings_source=source)
    except ValidationError as exc:
        print(f"{prog} {name}: invalid settings:\n{exc}", file=sys.stderr)
        return 2
    return command.run(settings)


def parse_command_name(prog: str, description: str, choices: Mapping[str, str], args: Sequence[str]) -> str | None:
    """The subcommand named first in ``args``; None (after argparse printed why) when it is missing or unknown."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=f"{description} Each command takes --flags or LOCKERFLEET_* environment variables; "
        f"see `{prog} <command> --help`.",
    )
    parser.add_argument("command", choices=sorted(choices), help="; ".join(f"{k}: {v}" for k, v in choices.items()))
    if not args or args[0] not in choices:
        parser.parse_args(list(args[:1]))
        return None
    return args[0]
