"""The ``lockerfleet`` console command: one subcommand per process kind."""

import argparse
import sys
from collections.abc import Callable
from datetime import UTC, datetime

from pydantic import ValidationError
from pydantic_settings import BaseSettings, CliApp, CliSettingsSource

from controller.settings import (
    ControllerSettings,
    DemoSettings,
    KeySettings,
    OperatorKeySettings,
    RevokeKeySettings,
)
from node_agent.settings import AgentSettings, SimSettings


def _run_controller(settings: BaseSettings) -> int:
    from controller.server import run_controller  # noqa: PLC0415 - agents never load the controller

    assert isinstance(settings, ControllerSettings)
    return run_controller(settings)


def _issue_key(settings: BaseSettings) -> int:
    from controller.store.reservations import ReservationStore  # noqa: PLC0415

    assert isinstance(settings, KeySettings)
    store = ReservationStore(settings.store_url())
    try:
        token = store.create_api_key(settings.partner, set(settings.sites), datetime.now(UTC))
        print(f"api key for {settings.partner} (sites {', '.join(sorted(settings.sites))}); shown once, keep it:")
        print(token)
        if settings.webhook_url:
            secret = store.set_webhook(settings.partner, settings.webhook_url)
            print(f"webhook {settings.webhook_url}; signing secret (verify Lockerfleet-Signature with it):")
            print(secret)
    finally:
        store.close()
    return 0


def _issue_operator_key(settings: BaseSettings) -> int:
    from controller.store.operators import issue_operator_key  # noqa: PLC0415

    assert isinstance(settings, OperatorKeySettings)
    token = issue_operator_key(settings.store_url(), settings.operator)
    print(f"operator key for {settings.operator} (the /v1/nodes API); shown once, keep it:")
    print(token)
    return 0


def _revoke_key(settings: BaseSettings) -> int:
    from controller.store.operators import OperatorStore  # noqa: PLC0415
    from controller.store.reservations import ReservationStore  # noqa: PLC0415

    assert isinstance(settings, RevokeKeySettings)
    store = ReservationStore(settings.store_url())
    try:
        if store.revoke_api_key(settings.key_id):
            print(f"revoked courier partner key {settings.key_id}; requests with it now get 401")
            return 0
        if OperatorStore(store.engine).revoke_key(settings.key_id):
            print(f"revoked operator key {settings.key_id}; requests with it now get 401")
            return 0
    finally:
        store.close()
    print(f"no key {settings.key_id} in {settings.store_url()}; check the id and --store-path", file=sys.stderr)
    return 1


def _run_agent(settings: BaseSettings) -> int:
    from node_agent.main import run_agent  # noqa: PLC0415 - the controller process never loads the agent

    assert isinstance(settings, AgentSettings)
    return run_agent(settings)


def _run_sim(settings: BaseSettings) -> int:
    from node_agent.simulator import run_sim  # noqa: PLC0415

    assert isinstance(settings, SimSettings)
    return run_sim(settings)


def _run_demo(settings: BaseSettings) -> int:
    from controller.devstack.demo import run_demo  # noqa: PLC0415

    assert isinstance(settings, DemoSettings)
    return run_demo(settings)


COMMANDS: dict[str, tuple[str, type[BaseSettings], Callable[[BaseSettings], int]]] = {
    "controller": ("run the central service", ControllerSettings, _run_controller),
    "agent": ("run the agent of one locker", AgentSettings, _run_agent),
    "sim": ("run a simulated fleet of agents on mock pins", SimSettings, _run_sim),
    "keys": ("issue a courier partner's API key (and register its webhook)", KeySettings, _issue_key),
    "operator-key": (
        "issue an operator's API key (fleet state, maintenance, direct opens)",
        OperatorKeySettings,
        _issue_operator_key,
    ),
    "revoke-key": ("revoke a partner's or an operator's API key by its id", RevokeKeySettings, _revoke_key),
    "demo": ("start a local broker and a simulated fleet, open a door", DemoSettings, _run_demo),
}


def main(argv: list[str] | None = None) -> int:
    """Dispatch ``lockerfleet <command> [--flags]``; flags after the command belong to its settings."""
    args = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="lockerfleet",
        description="MQTT fleet orchestrator for smart parcel lockers. "
        "Each command takes --flags or LOCKERFLEET_* environment variables; "
        "see `lockerfleet <command> --help`.",
    )
    parser.add_argument(
        "command", choices=sorted(COMMANDS), help="; ".join(f"{k}: {v[0]}" for k, v in COMMANDS.items())
    )
    if not args or args[0] not in COMMANDS:
        parser.parse_args(args[:1])
        return 2
    _, settings_cls, run = COMMANDS[args[0]]
    try:
        source: CliSettingsSource[BaseSettings] = CliSettingsSource(
            settings_cls, cli_prog_name=f"lockerfleet {args[0]}"
        )
        settings = CliApp.run(settings_cls, cli_args=args[1:], cli_settings_source=source)
    except ValidationError as exc:
        print(f"lockerfleet {args[0]}: invalid settings:\n{exc}", file=sys.stderr)
        return 2
    return run(settings)
