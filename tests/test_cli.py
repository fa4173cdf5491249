"""The ``lockerfleet`` command: subcommands, flags and ``LOCKERFLEET_*`` environment variables."""

import dataclasses
from pathlib import Path

import pytest
from pydantic_settings import BaseSettings, CliApp

import schemas.cli
from controller.cli import COMMANDS, main
from controller.settings import ControllerSettings, OperatorKeySettings, RevokeKeySettings, reservations_sqlite_url
from controller.store.operators import OperatorStore
from controller.store.reservations import ReservationStore
from node_agent.cli import main as agent_main
from node_agent.settings import AgentSettings
from schemas.cli import extra_distributions, missing_extras


@pytest.fixture
def parsed(monkeypatch: pytest.MonkeyPatch) -> list[BaseSettings]:
    """Settings the ``controller`` command was started with (the service itself is replaced by a recorder)."""
    seen: list[BaseSettings] = []

    def record(settings: BaseSettings) -> int:
        seen.append(settings)
        return 7

    monkeypatch.setitem(COMMANDS, "controller", dataclasses.replace(COMMANDS["controller"], run=record))
    return seen


def test_flags_reach_the_settings(parsed: list[BaseSettings]) -> None:
    assert main(["controller", "--http-port", "9123", "--influx-db", "fleet", "--share-group", "ingest"]) == 7
    settings = parsed[0]
    assert isinstance(settings, ControllerSettings)
    assert (settings.http_port, settings.influx_db, settings.share_group) == (9123, "fleet", "ingest")


@pytest.mark.parametrize(
    ("variable", "value", "shown"),
    [
        ("LOCKERFLEET_MQTT_URL", "mqtt://broker.example:1884", "mqtt://broker.example:1884"),
        ("LOCKERFLEET_INFLUX_URL", "http://tsdb:8181", "http://tsdb:8181"),
        ("LOCKERFLEET_INFLUX_DB", "lockers", "influx_db='lockers'"),
        ("LOCKERFLEET_HTTP_PORT", "8099", "http_port=8099"),
    ],
)
def test_environment_variables_reach_the_settings(
    monkeypatch: pytest.MonkeyPatch, parsed: list[BaseSettings], variable: str, value: str, shown: str
) -> None:
    monkeypatch.setenv(variable, value)
    main(["controller"])
    assert shown in repr(parsed[0])


def test_a_flag_beats_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCKERFLEET_HTTP_PORT", "8099")
    assert CliApp.run(ControllerSettings, cli_args=["--http-port", "7000"]).http_port == 7000


def test_bad_setting_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["controller", "--http-port", "70000"]) == 2
    err = capsys.readouterr().err
    assert "invalid settings" in err and "--http-port / LOCKERFLEET_HTTP_PORT: " in err
    assert "less than or equal to 65535" in err


def test_agent_refuses_a_node_id_that_cannot_be_a_topic_level(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["agent", "--node-id", "a/b"]) == 2
    assert "--node-id / LOCKERFLEET_NODE_ID" in capsys.readouterr().err


def test_unknown_command_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["launch-rockets"])
    assert info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize("settings_cls", [ControllerSettings, AgentSettings, OperatorKeySettings, RevokeKeySettings])
def test_every_setting_is_documented(settings_cls: type[BaseSettings]) -> None:
    undocumented = [name for name, f in settings_cls.model_fields.items() if not f.description]
    assert not undocumented


def test_keys_issues_a_working_api_key_and_registers_the_webhook(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    store_path = tmp_path / "fleet.sqlite3"
    argv = ["keys", "--partner", "acme", "--sites", '["centre"]', "--store-path", str(store_path)]
    argv += ["--create-store", "true"]  # no controller has made it yet
    # acme.example need not resolve here: the public-address check is tested in tests/controller/notify
    assert main([*argv, "--webhook-url", "https://acme.example/hooks", "--webhook-allow-private", "true"]) == 0
    lines = capsys.readouterr().out.splitlines()
    token, secret = lines[1], lines[3]
    store = ReservationStore(reservations_sqlite_url(store_path))
    key = store.authenticate(token)
    assert key is not None and key.partner == "acme" and key.sites == {"centre"}
    assert store.webhook_of("acme") == ("https://acme.example/hooks", secret)
    store.close()


def test_operator_key_issues_a_working_operator_key(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    store_path = tmp_path / "fleet.sqlite3"
    new_store = ["--store-path", str(store_path), "--create-store", "true"]
    assert main(["operator-key", "--operator", "alice@ops", *new_store]) == 0
    token = capsys.readouterr().out.splitlines()[1]
    store = ReservationStore(reservations_sqlite_url(store_path))
    key = OperatorStore(store.engine).authenticate(token)
    assert key is not None and key.operator == "alice@ops"
    assert store.authenticate(token) is None  # not a courier partner's key
    store.close()
    assert main(["operator-key", "--operator", "no spaces", "--store-path", str(store_path)]) == 2


def test_revoke_key_shuts_out_a_partner_key_and_an_operator_key(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    store_path = tmp_path / "fleet.sqlite3"
    new_store = ["--store-path", str(store_path), "--create-store", "true"]
    assert main(["keys", "--partner", "acme", "--sites", '["centre"]', *new_store]) == 0
    assert main(["operator-key", "--operator", "alice", "--store-path", str(store_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    partner_token, operator_token = lines[1], lines[3]
    for token in (partner_token, operator_token):
        key_id = token.split("_")[1]
        assert main(["revoke-key", "--key-id", key_id, "--store-path", str(store_path)]) == 0
        assert "revoked" in capsys.readouterr().out
    store = ReservationStore(reservations_sqlite_url(store_path))
    assert store.authenticate(partner_token) is None
    assert OperatorStore(store.engine).authenticate(operator_token) is None
    store.close()
    assert main(["revoke-key", "--key-id", "0123456789abcdef", "--store-path", str(store_path)]) == 1
    assert "no key 0123456789abcdef" in capsys.readouterr().err


ABSENT = "lockerfleet-distribution-that-is-not-installed"


def _without(monkeypatch: pytest.MonkeyPatch, *extras: str) -> None:
    """Pretend the installed lockerfleet's ``extras`` each need a distribution that is not installed."""
    requirements = [*schemas.cli.installed_requirements(), *(f'{ABSENT}>=1; extra == "{e}"' for e in extras)]
    monkeypatch.setattr(schemas.cli, "installed_requirements", lambda: requirements)


@pytest.mark.parametrize(
    ("argv", "extra", "line"),
    [
        (
            ["controller"],
            "controller",
            "lockerfleet controller needs the controller extra: pip install 'lockerfleet[controller]'",
        ),
        (
            ["revoke-key"],
            "controller",
            "lockerfleet revoke-key needs the controller extra: pip install 'lockerfleet[controller]'",
        ),
        (["agent"], "agent", "lockerfleet agent needs the agent extra: pip install 'lockerfleet[agent]'"),
        (["demo"], "agent", "lockerfleet demo needs the agent extra: pip install 'lockerfleet[agent]'"),
    ],
)
def test_a_missing_extra_is_named_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str], extra: str, line: str
) -> None:
    _without(monkeypatch, extra)
    assert main(argv) == 2
    assert capsys.readouterr().err == line + "\n"


def test_lockerfleet_agent_refuses_without_the_agent_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _without(monkeypatch, "agent", "controller")
    assert agent_main(["sim"]) == 2
    assert capsys.readouterr().err == "lockerfleet-agent sim needs the agent extra: pip install 'lockerfleet[agent]'\n"
    assert main(["demo"]) == 2
    both = "lockerfleet demo needs the agent and controller extras: pip install 'lockerfleet[agent,controller]'"
    assert capsys.readouterr().err == both + "\n"


def test_an_extra_is_read_from_the_installed_metadata() -> None:
    requirements = [
        "pydantic<3,>=2.7",
        'aiomqtt<3,>=2.3; extra == "agent"',
        'lgpio>=0.2; (platform_machine == "aarch64" or platform_machine == "armv7l") and extra == "agent"',
        'psycopg[binary]<4,>=3.2; extra == "postgres"',
        "prometheus-client>=0.20; extra == 'controller'",
    ]
    assert extra_distributions("agent", requirements) == ["aiomqtt"]  # a Pi-only pin library is not required here
    assert extra_distributions("postgres", requirements) == ["psycopg"]
    assert extra_distributions("controller", requirements) == ["prometheus-client"]
    installed = schemas.cli.installed_requirements()
    assert "fastapi" in extra_distributions("controller", installed)
    assert "gpiozero" in extra_distributions("agent", installed)
    assert missing_extras(["agent", "controller"]) == []  # the dev install has both


def test_lockerfleet_agent_parses_agent_settings(capsys: pytest.CaptureFixture[str]) -> None:
    assert agent_main(["agent", "--node-id", "a/b"]) == 2
    assert "lockerfleet-agent agent: invalid settings" in capsys.readouterr().err
