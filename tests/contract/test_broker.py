"""Broker addresses: URL schemes, credentials and TLS files, checked before anything connects."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from controller.settings import ControllerSettings
from node_agent.settings import AgentSettings
from schemas.broker import BrokerFiles, broker_address, check_url


def test_plain_and_tls_urls_get_their_default_ports_and_decoded_credentials() -> None:
    plain = broker_address("mqtt://node-1:p%40ss%3Aword@broker.example")
    assert (plain.host, plain.port, plain.username, plain.password, plain.tls) == (
        "broker.example",
        1883,
        "node-1",
        "p@ss:word",
        None,
    )
    secure = broker_address("mqtts://broker.example")
    assert secure.port == 8883 and secure.username is None and secure.tls is not None
    assert secure.tls.check_hostname  # the broker's name is verified against its certificate


@pytest.mark.parametrize(
    ("url", "files", "complaint"),
    [
        ("tcp://broker:1883", BrokerFiles(), "use mqtt:// or mqtts://"),
        ("mqtt://broker", BrokerFiles(ca_file=Path("ca.pem")), "use mqtts://"),
        ("mqtts://broker", BrokerFiles(key_file=Path("k.pem")), "needs both"),
    ],
)
def test_unusable_combinations_say_what_to_change(url: str, files: BrokerFiles, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        check_url(url, files)


@pytest.mark.parametrize("settings_cls", [AgentSettings, ControllerSettings])
def test_settings_refuse_broker_files_on_a_plain_url_or_missing(
    settings_cls: type[AgentSettings | ControllerSettings], tmp_path: Path
) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    with pytest.raises(ValidationError, match="use mqtts://"):
        settings_cls(mqtt_url="mqtt://broker:1883", mqtt_ca_file=ca)
    with pytest.raises(ValidationError, match="mqtt_cert_file"):
        settings_cls(mqtt_url="mqtts://broker", mqtt_cert_file=tmp_path / "missing.pem")
    assert settings_cls(mqtt_url="mqtts://broker", mqtt_ca_file=ca).broker_files().ca_file == ca


def test_a_missing_ca_file_is_reported_when_the_address_is_built(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        broker_address("mqtts://broker", BrokerFiles(ca_file=tmp_path / "missing.pem"))


def test_a_password_file_replaces_the_url_password_and_may_not_contradict_it(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cret with spaces\n")
    address = broker_address("mqtt://controller@broker", BrokerFiles(password_file=secret))
    assert (address.username, address.password, address.tls) == ("controller", "s3cret with spaces", None)
    with pytest.raises(ValueError, match="give only one"):
        check_url("mqtt://controller:other@broker", BrokerFiles(password_file=secret))
