"""compose.yaml, the Dockerfile and the locker's systemd unit can't run here, so they are checked statically."""

import configparser
import json
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import yaml

from controller.cli import AGENT_COMMANDS as FORWARDED
from controller.cli import COMMANDS
from controller.devstack.demo import SITES_FILE
from controller.reservations.service import sites_from
from controller.settings import ControllerSettings
from node_agent.cli import COMMANDS as AGENT_COMMANDS
from node_agent.settings import AgentSettings

ROOT = Path(__file__).resolve().parents[1]


def _compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return doc


def test_compose_brings_up_the_whole_stack() -> None:
    services = _compose()["services"]
    assert {"mosquitto", "influxdb", "controller", "grafana"} <= set(services)


def test_controller_environment_names_real_settings() -> None:
    controller = _compose()["services"]["controller"]
    fields = set(ControllerSettings.model_fields)
    for name in controller["environment"]:
        assert name.startswith("LOCKERFLEET_")
        assert name.removeprefix("LOCKERFLEET_").lower() in fields, f"{name} is not a controller setting"
    assert controller["command"][0] in COMMANDS


def test_dependencies_and_healthchecks_line_up() -> None:
    services = _compose()["services"]
    for name, service in services.items():
        for dependency, rule in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            if rule.get("condition") == "service_healthy":
                assert "healthcheck" in services[dependency], f"{dependency} has no healthcheck"


def test_bind_mounts_and_configs_exist() -> None:
    compose = _compose()
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"bind mount {source} is missing"
            else:
                assert source in compose["volumes"], f"named volume {source} is not declared"
        for config in service.get("configs", []):
            assert config["source"] in compose["configs"]
        for secret in service.get("secrets", []):
            assert secret in compose["secrets"], f"secret {secret} is not declared"


def test_dockerfile_copies_every_package_and_the_lock() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    for package in ("schemas", "controller", "node_agent"):
        assert re.search(rf"^COPY {package} ", dockerfile, re.M), package
    assert "-c requirements.lock" in dockerfile
    assert "build" in _compose()["services"]["controller"]


def test_grafana_datasource_uses_influxql_with_token_auth() -> None:
    doc = yaml.safe_load((ROOT / "grafana/provisioning/datasources/influxdb.yaml").read_text())
    [source] = doc["datasources"]
    assert source["type"] == "influxdb"
    assert source["jsonData"].get("version", "InfluxQL") == "InfluxQL"
    assert source["secureJsonData"]["httpHeaderValue1"].startswith("Token ")


def test_secret_files_are_kept_out_of_git() -> None:
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    for secret in _compose()["secrets"].values():
        assert secret["file"].removeprefix("./") in ignored, f"{secret['file']} could be committed"


def test_the_locker_unit_starts_an_installed_agent_with_real_settings() -> None:
    """firmware-shims' unit runs the agent command of a console script from the current slot's venv; the example
    environment file names real agent settings and keeps the data in the unit's state directory."""
    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    unit.read(ROOT / "firmware-shims/lockerfleet-agent.service")
    service = unit["Service"]
    program, command, *flags = shlex.split(service["ExecStart"])
    script = Path(program).name
    assert program == f"/opt/lockerfleet/current/venv/bin/{script}"
    assert script in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert command in AGENT_COMMANDS and (script == "lockerfleet-agent" or command in FORWARDED)
    fields = set(AgentSettings.model_fields)
    assert all(flag.removeprefix("--").partition("=")[0].replace("-", "_") in fields for flag in flags), flags
    assert service["EnvironmentFile"].lstrip("-") == "/etc/lockerfleet/agent.env"
    example = (ROOT / "firmware-shims/agent.env.example").read_text().splitlines()
    settings = dict(line.split("=", 1) for line in example if line and not line.startswith("#"))
    assert {"LOCKERFLEET_NODE_ID", "LOCKERFLEET_BOARD_PROFILE"} <= set(settings)
    for variable in settings:
        assert variable.removeprefix("LOCKERFLEET_").lower() in fields, variable
    data_dir = f"/var/lib/{service['StateDirectory']}"
    assert settings["LOCKERFLEET_DATA_DIR"] == service["WorkingDirectory"] == data_dir


def test_the_compose_controller_reads_the_shipped_sites_file_and_the_keys_hint_names_one_of_its_sites() -> None:
    compose = _compose()
    controller = compose["services"]["controller"]
    target = controller["environment"]["LOCKERFLEET_SITES_FILE"]
    [mounted] = [c for c in controller["configs"] if c["target"] == target]
    shipped = (ROOT / compose["configs"][mounted["source"]]["file"]).resolve()
    assert shipped == SITES_FILE.resolve()  # the demo's sites: one file for both
    sites = sites_from(json.loads(shipped.read_text()))
    assert len(sites) >= 2
    hints = re.findall(r"keys --partner \S+ --sites '(\[.*?\])'", (ROOT / "compose.yaml").read_text())
    assert hints
    assert all(set(json.loads(hint)) <= set(sites) for hint in hints), hints


def _readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def test_the_readme_says_where_grafana_listens_how_to_log_in_and_how_to_provision_it_without_compose() -> None:
    section = _readme_section("Grafana")
    grafana = _compose()["services"]["grafana"]
    published = grafana["ports"][0].split(":")[0]
    assert section.count(f"http://localhost:{published}") == 2  # with compose and without
    assert "GRAFANA_ADMIN_PASSWORD" in grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"]
    assert "`admin` with the password in\n  `GRAFANA_ADMIN_PASSWORD`" in section
    assert "the first login is `admin` / `admin`" in section
    mounts = dict(volume.split(":")[:2] for volume in grafana["volumes"])
    provisioning, dashboards = mounts["./grafana/provisioning"], mounts["./grafana/dashboards"]
    assert f"sudo cp -r grafana/provisioning/. {provisioning}/" in section
    assert f"sudo cp grafana/dashboards/*.json {dashboards}/" in section
    provider = yaml.safe_load((ROOT / "grafana/provisioning/dashboards/lockerfleet.yaml").read_text())
    assert provider["providers"][0]["options"]["path"] == dashboards
    datasource = (ROOT / "grafana/provisioning/datasources/influxdb.yaml").read_text()
    for variable in set(re.findall(r"\$\{(LOCKERFLEET_\w+)\}", datasource)):
        assert f"{variable}=" in section, variable  # the native install sets each one
