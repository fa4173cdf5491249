"""Settings errors speak flags, and key commands change only the controller's store (issue 13, points 7 and 8)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

from controller.cli import COMMANDS, main
from controller.settings import reservations_sqlite_url
from controller.store.reservations import ReservationStore
from node_agent.cli import COMMANDS as AGENT_COMMANDS
from schemas.cli import setting_name

TOKEN = "lf_0123456789abcdef_Zq8sP3cr3tPartOfTheKeyNobodyMaySee"
SECRET = TOKEN.split("_", 2)[2]


def test_revoke_key_given_a_whole_token_names_the_flag_and_echoes_no_secret(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["revoke-key", "--key-id", TOKEN]) == 2
    err = capsys.readouterr().err
    assert "--key-id / LOCKERFLEET_KEY_ID: not of the expected form" in err
    assert "16 hex digits after lf_ or lfop_" in err  # what to give instead, not a regular expression
    assert not any(SECRET[i : i + 6] in err for i in range(len(SECRET) - 5))
    assert "errors.pydantic.dev" not in err and "'^[0-9a-f]{16}$'" not in err


@pytest.mark.parametrize("from_env", [False, True])
def test_a_broker_url_of_the_wrong_scheme_names_the_setting(
    from_env: bool, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = "http://locker-1:pw-s3cret@broker.example:1883"
    if from_env:
        monkeypatch.setenv("LOCKERFLEET_MQTT_URL", url)
    assert main(["agent", *([] if from_env else ["--mqtt-url", url])]) == 2
    err = capsys.readouterr().err
    assert "--mqtt-url / LOCKERFLEET_MQTT_URL: broker URL scheme 'http' is not supported" in err
    assert "pw-s3cret" not in err and "settings:" not in err.replace("invalid settings:", "")


def test_tls_files_on_a_plain_broker_url_name_every_setting_involved(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["agent", "--mqtt-url", "mqtt://broker.example", "--mqtt-ca-file", __file__]) == 2
    err = capsys.readouterr().err
    assert "--mqtt-url / LOCKERFLEET_MQTT_URL and --mqtt-ca-file / LOCKERFLEET_MQTT_CA_FILE: " in err


@pytest.mark.parametrize("from_env", [False, True])
def test_a_list_that_is_not_json_names_the_setting_without_a_traceback(
    from_env: bool, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    sites = '["centre"'
    if from_env:
        monkeypatch.setenv("LOCKERFLEET_SITES", sites)
    argv = ["keys", "--partner", "acme", "--store-path", str(tmp_path / "lf.sqlite3")]
    assert main([*argv, *([] if from_env else ["--sites", sites])]) == 2
    err = capsys.readouterr().err
    assert "lockerfleet keys: invalid settings:\n  --sites / LOCKERFLEET_SITES: " in err
    assert "a list takes JSON" in err and "Traceback" not in err


SETTINGS: dict[str, type[BaseSettings]] = {name: c.settings for name, c in COMMANDS.items()}
SETTINGS |= {name: c.settings for name, c in AGENT_COMMANDS.items()}
"""Every ``lockerfleet`` command (``agent`` and ``sim`` forwarded) and its settings."""


@pytest.mark.parametrize("command", sorted(SETTINGS))
def test_every_named_flag_is_one_the_command_takes(command: str) -> None:
    help_text = subprocess.run(
        [sys.executable, "-c", "from controller.cli import main; raise SystemExit(main())", command, "-h"],
        capture_output=True,
        text=True,
        check=True,
        env=os.environ | {"COLUMNS": "1000"},
    ).stdout
    settings = SETTINGS[command]
    for field in settings.model_fields:
        flag, env = setting_name(settings, field).split(" / ")
        assert f"{flag} " in help_text, (command, flag)
        assert env == "LOCKERFLEET_" + flag.removeprefix("--").replace("-", "_").upper()


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["keys", "--partner", "acme", "--sites", '["centre"]'], 2),
        (["operator-key", "--operator", "alice"], 2),
        (["operator-webhook", "--url", "https://127.0.0.1/hook", "--webhook-allow-private", "true"], 2),
        (["revoke-key", "--key-id", "0123456789abcdef"], 1),
    ],
)
def test_key_commands_refuse_to_start_a_store_implicitly(
    argv: list[str], code: int, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    store_path = tmp_path / "elsewhere.sqlite3"
    assert main([*argv, "--store-path", str(store_path)]) == code
    err = capsys.readouterr().err
    assert f"no store at {tmp_path / 'elsewhere-reservations.sqlite3'}, nothing done" in err
    assert "--store-path / LOCKERFLEET_STORE_PATH" in err
    assert ("--create-store" in err) is (argv[0] != "revoke-key")  # nothing to revoke in a new store
    assert list(tmp_path.iterdir()) == []


def test_key_commands_use_an_existing_store_and_create_one_only_when_told(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    store_path = str(tmp_path / "lf.sqlite3")
    assert main(["operator-key", "--operator", "alice", "--store-path", store_path, "--create-store", "true"]) == 0
    assert main(["keys", "--partner", "acme", "--sites", '["centre"]', "--store-path", store_path]) == 0
    token = capsys.readouterr().out.splitlines()[-1]
    store = ReservationStore(reservations_sqlite_url(Path(store_path)))
    key = store.authenticate(token)
    store.close()
    assert key is not None and key.partner == "acme"


def test_keys_checks_its_sites_against_the_sites_file(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    sites_file = tmp_path / "sites.json"
    sites_file.write_text(json.dumps([{"site_id": s, "lat": 52.5, "lon": 13.4} for s in ("centre", "north")]))
    monkeypatch.setenv("LOCKERFLEET_SITES_FILE", str(sites_file))  # as the controller's environment sets it
    store_path = str(tmp_path / "lf.sqlite3")
    argv = ["keys", "--partner", "acme", "--store-path", store_path, "--create-store", "true"]
    assert main([*argv, "--sites", '["cnetre","north"]']) == 2
    err = capsys.readouterr().err
    assert f"--sites names cnetre, not a site of {sites_file} (centre, north)" in err and "No key issued" in err
    assert not (tmp_path / "lf-reservations.sqlite3").exists()
    assert main([*argv, "--sites", '["centre","north"]']) == 0
    token = capsys.readouterr().out.splitlines()[-1]
    store = ReservationStore(reservations_sqlite_url(Path(store_path)))
    key = store.authenticate(token)
    store.close()
    assert key is not None and key.sites == {"centre", "north"}
