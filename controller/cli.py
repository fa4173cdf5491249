"""The ``lockerfleet`` console command: the controller and its admin commands; ``agent`` and ``sim`` where installed.

``lockerfleet agent`` and ``lockerfleet sim`` are ``lockerfleet-agent``'s commands, forwarded; each command refuses
with one line naming the extra to install when its extra is missing (:mod:`schemas.cli`).
"""

import gc
import importlib
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic_settings import BaseSettings

from controller.settings import (
    ControllerSettings,
    DemoSettings,
    KeySettings,
    NewStore,
    OperatorKeySettings,
    OperatorWebhookSettings,
    RevokeKeySettings,
    StoreLocation,
    TechnicianKeySettings,
)
from schemas.broker import redact_url
from schemas.cli import Command, missing_extras, parse_command_name, refusal, run_command

if TYPE_CHECKING:
    from controller.store.reservations import ReservationStore


def _run_controller(settings: BaseSettings) -> int:
    # Start-up (importing the server, building the app and the controller) makes objects that live as long as the
    # process, and next to no garbage: the cyclic collector stays off until run_controller freezes them, instead of
    # walking the growing heap again and again (about a tenth of the start-up CPU). On if start-up fails, too.
    gc.disable()
    try:
        from controller.server import run_controller  # noqa: PLC0415 - agents never load the controller

        assert isinstance(settings, ControllerSettings)
        return run_controller(settings)
    finally:
        gc.enable()


def _missing_store(url: str) -> str | None:
    """Where the store would be, when ``url`` holds none yet (an SQLite file that does not exist, or a database
    without the store's tables); None when it exists."""
    import sqlalchemy as sa  # noqa: PLC0415 - the controller extra

    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        missing = database not in ("", ":memory:") and not Path(database).exists()
        return str(Path(database).absolute()) if missing else None
    engine = sa.create_engine(url)
    try:
        with engine.connect() as db:
            tables = set(sa.inspect(db).get_table_names())
    finally:
        engine.dispose()
    return None if tables & {"alembic_version", "reservations"} else parsed.render_as_string(hide_password=True)


def _open_store(command: str, settings: StoreLocation) -> "ReservationStore | None":
    """The store the controller with the same settings uses; None, having said why, when there is none yet and
    ``--create-store`` was not given (a key in a store the controller does not read would only get 401)."""
    from controller.store.reservations import ReservationStore  # noqa: PLC0415

    url = settings.store_url()
    may_create = isinstance(settings, NewStore) and settings.create_store
    if not may_create and (where := _missing_store(url)) is not None:
        create = "; or --create-store true to start a new one" if isinstance(settings, NewStore) else ""
        print(
            f"lockerfleet {command}: no store at {where}, nothing done. Give the controller's "
            f"--store-path / LOCKERFLEET_STORE_PATH (or --reservations-url / LOCKERFLEET_RESERVATIONS_URL){create}",
            file=sys.stderr,
        )
        return None
    return ReservationStore(url)


def _unknown_sites(settings: KeySettings) -> str | None:
    """Why ``--sites`` does not fit the sites file, or None (also when no sites file is configured)."""
    if settings.sites_file is None:
        return None
    try:
        known = {str(site["site_id"]) for site in json.loads(settings.sites_file.read_text())}
    except (OSError, ValueError, TypeError, KeyError) as exc:
        return f"--sites-file {settings.sites_file} is unreadable ({exc!r}); fix it or leave it out"
    unknown = sorted(set(settings.sites) - known)
    if not unknown:
        return None
    return (
        f"--sites names {', '.join(unknown)}, not a site of {settings.sites_file} "
        f"({', '.join(sorted(known)) or 'none'}); reservations there could only get 409"
    )


def _issue_key(settings: BaseSettings) -> int:
    from controller.notify.targets import WebhookTargetError, check_webhook_url  # noqa: PLC0415

    assert isinstance(settings, KeySettings)
    if (problem := _unknown_sites(settings)) is not None:
        print(f"lockerfleet keys: {problem}. No key issued.", file=sys.stderr)
        return 2
    if settings.webhook_url:
        try:
            check_webhook_url(settings.webhook_url, allow_private=settings.webhook_allow_private)
        except WebhookTargetError as exc:
            print(f"lockerfleet keys: --webhook-url refused, no key issued: {exc}", file=sys.stderr)
            return 2
    store = _open_store("keys", settings)
    if store is None:
        return 2
    try:
        token = store.create_api_key(
            settings.partner,
            set(settings.sites),
            datetime.now(UTC),
            priorities=settings.priorities,
            quota_per_site=settings.quota_per_site,
        )
        priorities = ",".join(str(int(p)) for p in sorted(set(settings.priorities)))
        quota = settings.quota_per_site or "the controller's share of each site"
        print(
            f"api key for {settings.partner} (sites {', '.join(sorted(settings.sites))}; priorities {priorities}; "
            f"quota per site {quota}); shown once, keep it:"
        )
        print(token)
        if settings.webhook_url:
            secret = store.set_webhook(settings.partner, settings.webhook_url)
            print(f"webhook {redact_url(settings.webhook_url)}; signing secret (verify Lockerfleet-Signature with it):")
            print(secret)
    finally:
        store.close()
    return 0


def _issue_operator_key(settings: BaseSettings) -> int:
    from controller.store.operators import OperatorStore  # noqa: PLC0415

    assert isinstance(settings, OperatorKeySettings)
    store = _open_store("operator-key", settings)
    if store is None:
        return 2
    try:
        token = OperatorStore(store.engine).create_key(settings.operator, datetime.now(UTC))
    finally:
        store.close()
    print(f"operator key for {settings.operator} (the /v1/nodes API); shown once, keep it:")
    print(token)
    return 0


def _issue_technician_key(settings: BaseSettings) -> int:
    from controller.store.fieldwork import FieldStore  # noqa: PLC0415
    from controller.swapqueue import GeoPoint, Technician  # noqa: PLC0415

    assert isinstance(settings, TechnicianKeySettings)
    store = _open_store("technician-key", settings)
    if store is None:
        return 2
    technician = Technician(settings.technician, GeoPoint(*settings.start_point()), settings.max_stops)
    try:
        token = FieldStore(store.engine).create_key(technician, datetime.now(UTC))
    finally:
        store.close()
    print(
        f"technician key for {settings.technician} (starts at {settings.start}, up to {settings.max_stops} stops a "
        "day; their page is /field); shown once, keep it:"
    )
    print(token)
    return 0


def _operator_webhook(settings: BaseSettings) -> int:
    from controller.notify.targets import WebhookTargetError, check_webhook_url  # noqa: PLC0415
    from controller.store.alerts import AlertStore  # noqa: PLC0415

    assert isinstance(settings, OperatorWebhookSettings)
    if settings.url is not None:
        try:
            check_webhook_url(settings.url, allow_private=settings.webhook_allow_private)
        except WebhookTargetError as exc:
            print(f"lockerfleet operator-webhook: --url refused, nothing registered: {exc}", file=sys.stderr)
            return 2
    store = _open_store("operator-webhook", settings)
    if store is None:
        return 2
    try:
        alerts = AlertStore(store)
        if settings.remove:
            if alerts.remove_operator_webhook(settings.name):
                print(f"operator webhook {settings.name} removed; alerts are no longer sent to it")
                return 0
            print(f"no operator webhook {settings.name} in {settings.store_url()}", file=sys.stderr)
            return 1
        if settings.url is None:
            print("lockerfleet operator-webhook: give --url (or --remove with --name)", file=sys.stderr)
            return 2
        secret = alerts.set_operator_webhook(settings.name, settings.url)
    finally:
        store.close()
    print(f"operator webhook {settings.name}: {settings.url} receives every alert notification from now on;")
    print("signing secret (verify Lockerfleet-Signature with it), shown once:")
    print(secret)
    return 0


def _revoke_key(settings: BaseSettings) -> int:
    from controller.store.fieldwork import FieldStore  # noqa: PLC0415
    from controller.store.operators import OperatorStore  # noqa: PLC0415

    assert isinstance(settings, RevokeKeySettings)
    store = _open_store("revoke-key", settings)
    if store is None:
        return 1
    try:
        if store.revoke_api_key(settings.key_id):
            print(f"revoked courier partner key {settings.key_id}; requests with it now get 401")
            return 0
        if OperatorStore(store.engine).revoke_key(settings.key_id):
            print(f"revoked operator key {settings.key_id}; requests with it now get 401")
            return 0
        if FieldStore(store.engine).revoke_key(settings.key_id):
            print(f"revoked technician key {settings.key_id}; requests with it now get 401")
            return 0
    finally:
        store.close()
    print(f"no key {settings.key_id} in {settings.store_url()}; check the id and --store-path", file=sys.stderr)
    return 1


def _run_demo(settings: BaseSettings) -> int:
    from controller.devstack.demo import run_demo  # noqa: PLC0415

    assert isinstance(settings, DemoSettings)
    return run_demo(settings)


COMMANDS: dict[str, Command] = {
    "controller": Command("run the central service", ControllerSettings, _run_controller, ("controller",)),
    "keys": Command(
        "issue a courier partner's API key (and register its webhook)", KeySettings, _issue_key, ("controller",)
    ),
    "operator-key": Command(
        "issue an operator's API key (fleet state, maintenance, direct opens)",
        OperatorKeySettings,
        _issue_operator_key,
        ("controller",),
    ),
    "technician-key": Command(
        "register a field technician and issue their key (today's route at /field)",
        TechnicianKeySettings,
        _issue_technician_key,
        ("controller",),
    ),
    "operator-webhook": Command(
        "send signed alert notifications to an operator endpoint",
        OperatorWebhookSettings,
        _operator_webhook,
        ("controller",),
    ),
    "revoke-key": Command(
        "revoke a partner's or an operator's API key by its id", RevokeKeySettings, _revoke_key, ("controller",)
    ),
    "demo": Command(
        "run broker, InfluxDB, controller and a simulated fleet; walk a courier reservation",
        DemoSettings,
        _run_demo,
        ("agent", "controller"),
    ),
}

AGENT_COMMANDS: dict[str, str] = {
    "agent": "run the agent of one locker (lockerfleet-agent agent)",
    "sim": "run a simulated fleet of agents on mock pins (lockerfleet-agent sim)",
}
"""Commands of ``lockerfleet-agent`` that ``lockerfleet`` forwards."""

GROUPS: dict[str, tuple[str, str]] = {
    "release": ("signed releases: keygen, build, sign, verify, publish", "controller.releases.cli:RELEASE_COMMANDS"),
    "rollout": (
        "firmware rollouts: create, follow, list, pause, resume, abort, rollback",
        "controller.rollouts.cli:ROLLOUT_COMMANDS",
    ),
}
"""Commands with subcommands (``lockerfleet rollout follow …``): description, and where the subcommands are."""


def _run_group(name: str, args: list[str]) -> int:
    """``lockerfleet <group> <subcommand> [--flags]``; the group's module is imported once its extra is there."""
    missing = missing_extras(("controller",))
    if missing:
        print(refusal(f"lockerfleet {name}", missing), file=sys.stderr)
        return 2
    module, _, attribute = GROUPS[name][1].partition(":")
    commands: dict[str, Command] = getattr(importlib.import_module(module), attribute)
    choices = {sub: command.description for sub, command in commands.items()}
    sub = parse_command_name(f"lockerfleet {name}", GROUPS[name][0].capitalize() + ".", choices, args)
    if sub is None:
        return 2
    return run_command(f"lockerfleet {name}", sub, commands[sub], args[1:])


def main(argv: list[str] | None = None) -> int:
    """Dispatch ``lockerfleet <command> [--flags]``; flags after the command belong to its settings."""
    args = sys.argv[1:] if argv is None else argv
    choices = {name: command.description for name, command in COMMANDS.items()} | AGENT_COMMANDS
    choices |= {name: description for name, (description, _) in GROUPS.items()}
    name = parse_command_name("lockerfleet", "MQTT fleet orchestrator for smart parcel lockers.", choices, args)
    if name is None:
        return 2
    if name in AGENT_COMMANDS:
        from node_agent.cli import main as agent_main  # noqa: PLC0415 - the controller process never loads the agent

        return agent_main(args, prog="lockerfleet")
    if name in GROUPS:
        return _run_group(name, args[1:])
    return run_command("lockerfleet", name, COMMANDS[name], args[1:])
