"""What both console scripts share: one subcommand per process kind, its settings, and the extra it needs.

A locker installs ``lockerfleet[agent]`` and the central service ``lockerfleet[controller]``; both get both console
scripts. A command whose extra is missing refuses at start with one line naming the extra to install (exit 2),
before anything imports the missing libraries. What an extra holds is read from the installed distribution's
metadata, so pyproject.toml stays the one list.
"""

import argparse
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from pydantic import ValidationError
from pydantic_settings import BaseSettings, CliApp, CliSettingsSource, SettingsError


@dataclass(frozen=True)
class Command:
    """One subcommand: what it does, the settings it parses, what runs it, and the extras it needs."""

    description: str
    settings: type[BaseSettings]
    run: Callable[[BaseSettings], int]
    extras: tuple[str, ...]


def installed_requirements() -> list[str]:
    """The installed ``lockerfleet``'s requirements as its metadata states them (pyproject.toml at install time)."""
    try:
        return metadata.requires("lockerfleet") or []
    except metadata.PackageNotFoundError:  # a source tree that was never installed: nothing to check against
        return []


def extra_distributions(extra: str, requirements: Sequence[str]) -> list[str]:
    """The distributions ``extra`` needs on every platform (platform-only ones such as a Pi's lgpio are skipped)."""
    names = []
    for requirement in requirements:
        spec, _, marker = requirement.partition(";")
        if marker.strip().replace("'", '"') == f'extra == "{extra}"':
            names.append(re.split(r"[\s\[<>=!~(]", spec.strip(), maxsplit=1)[0])
    return names


def missing_extras(extras: Sequence[str]) -> list[str]:
    """The extras among ``extras`` with a distribution that is not installed."""
    requirements = installed_requirements()
    missing = []
    for extra in extras:
        for name in extra_distributions(extra, requirements):
            try:
                metadata.distribution(name)
            except metadata.PackageNotFoundError:
                missing.append(extra)
                break
    return missing


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
        print(f"{prog} {name}: invalid settings:\n{describe(exc, command.settings)}", file=sys.stderr)
        return 2
    except SettingsError as exc:  # a list or object that is not JSON, from a flag or the environment
        print(f"{prog} {name}: invalid settings:\n{describe_unparsed(exc, command.settings)}", file=sys.stderr)
        return 2
    return command.run(settings)


class SettingValueError(ValueError):
    """A check across settings failed; ``settings`` names the fields to change (so the error names their flags)."""

    def __init__(self, message: str, *settings: str) -> None:
        super().__init__(message)
        self.settings = settings


def setting_name(settings: type[BaseSettings], field: str) -> str:
    """How a user sets ``field``: ``--mqtt-url / LOCKERFLEET_MQTT_URL``."""
    config = settings.model_config
    flag = field.replace("_", "-") if config.get("cli_kebab_case") else field
    return f"--{flag} / {config.get('env_prefix', '')}{field.upper()}"


def describe(exc: ValidationError, settings: type[BaseSettings]) -> str:
    """One line per invalid setting, ``--flag / LOCKERFLEET_FLAG: what is wrong``, without the value given (it may
    hold a password or a key) and without pydantic's documentation link."""
    lines = []
    for error in exc.errors(include_url=False, include_input=False):
        field, *inner = error["loc"] or ("",)
        if isinstance(field, str) and field in settings.model_fields:
            names = [setting_name(settings, field)]
        else:
            cause = error.get("ctx", {}).get("error")
            names = [setting_name(settings, f) for f in getattr(cause, "settings", ())] or ["settings"]
        where = f" (item {inner[0] + 1})" if inner and isinstance(inner[0], int) else ""
        lines.append(f"  {' and '.join(names)}{where}: {_what_is_wrong(error, settings)}")
    return "\n".join(lines)


def _what_is_wrong(error: Any, settings: type[BaseSettings]) -> str:
    field = error["loc"][0] if error["loc"] else None
    description = settings.model_fields[field].description if field in settings.model_fields else None
    if error["type"] == "string_pattern_mismatch" and description:
        return f"not of the expected form. {description}"  # a regular expression tells a user nothing
    return str(error["msg"]).removeprefix("Value error, ")


def describe_unparsed(exc: SettingsError, settings: type[BaseSettings]) -> str:
    """The line for a value that could not be parsed at all (a list or object must be JSON), naming its setting."""
    found = re.search(r'for field "(\w+)"|encountered for (\w+):', str(exc))
    field = next((f for f in found.groups() if f), "") if found else ""
    if field not in settings.model_fields:
        return f"  settings: {exc}"
    reason = str(exc).partition(f"for {field}: ")[2] or "not valid JSON"
    return f'  {setting_name(settings, field)}: {reason} (a list takes JSON, e.g. \'["centre","north"]\')'


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
