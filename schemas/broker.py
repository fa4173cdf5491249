"""How every party reaches the broker: an ``mqtt://`` or ``mqtts://`` URL with optional credentials, and files.

The password can come from a file instead of the URL (a container secret, a systemd credential), so it shows in
no process list or environment. ``mqtts://`` encrypts the connection and verifies the broker's certificate
(against ``ca_file``, else the system's trust store); a ``cert_file`` (and its ``key_file``) also identifies the
client by certificate, as a broker with ``require_certificate`` expects. Building the address reads the files;
nothing here connects.
"""

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Self
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

from pydantic import AnyUrl, BaseModel, Field, FilePath, model_validator

from schemas.cli import SettingValueError

SCHEMES = {"mqtt": 1883, "mqtts": 8883}
"""Supported URL schemes and their default ports."""


@dataclass(frozen=True)
class BrokerFiles:
    """The password file, and PEM files for ``mqtts://``: the CA to trust, the client's own certificate and key."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    password_file: Path | None = None


NO_BROKER_FILES: Final = BrokerFiles()
"""No files: the URL says everything (``mqtts://`` then trusts the system's CA store, with no client certificate)."""


@dataclass(frozen=True)
class BrokerAddress:
    """Where and as whom to connect."""

    host: str
    port: int
    username: str | None
    password: str | None
    tls: ssl.SSLContext | None
    """None for plain ``mqtt://``."""


def check_url(url: str, files: BrokerFiles = NO_BROKER_FILES) -> None:
    """Raise ValueError, saying what to change, when ``url`` and ``files`` don't make a usable broker address."""
    scheme = urlsplit(url).scheme
    if scheme not in SCHEMES:
        raise SettingValueError(f"broker URL scheme {scheme!r} is not supported: use mqtt:// or mqtts://", "mqtt_url")
    given = [name for name in ("ca_file", "cert_file", "key_file") if getattr(files, name) is not None]
    if scheme == "mqtt" and given:
        raise SettingValueError(
            f"{', '.join(given)} given, but the broker URL is mqtt://: use mqtts:// to connect with TLS",
            "mqtt_url",
            *(f"mqtt_{name}" for name in given),
        )
    if files.key_file is not None and files.cert_file is None:
        raise SettingValueError(
            "key_file given without cert_file: a client certificate needs both", "mqtt_key_file", "mqtt_cert_file"
        )
    if files.password_file is not None and urlsplit(url).password is not None:
        raise SettingValueError(
            "a password in the broker URL and a password_file: give only one", "mqtt_url", "mqtt_password_file"
        )


def broker_address(url: str, files: BrokerFiles = NO_BROKER_FILES) -> BrokerAddress:
    """Parse ``url`` (percent-escapes in the credentials decoded), read the password file, build the TLS context."""
    check_url(url, files)
    parts = urlsplit(url)
    context = None
    if parts.scheme == "mqtts":
        context = ssl.create_default_context(cafile=files.ca_file)
        if files.cert_file is not None:
            context.load_cert_chain(files.cert_file, files.key_file)
    return BrokerAddress(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or SCHEMES[parts.scheme],
        username=unquote(parts.username) if parts.username else None,
        password=_password(parts.password, files.password_file),
        tls=context,
    )


def redact_url(url: object) -> str:
    """``url`` as it may be logged or printed: a password in it becomes ``***``, and so does every query value.

    The user name, host, port and path stay, so a log still says where the process tried to go. Text that does not
    parse as a URL is not echoed at all.
    """
    text = str(url)
    try:
        parts = urlsplit(text)
        netloc = parts.netloc
        if parts.password is not None:
            userinfo, _, hostport = netloc.rpartition("@")
            netloc = f"{userinfo.partition(':')[0]}:{_MASK}@{hostport}"
        query = "&".join(f"{name}={_MASK}" for name, _value in parse_qsl(parts.query, keep_blank_values=True))
    except ValueError:
        return "<unparseable URL>"
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


_MASK = "***"


def _password(in_url: str | None, password_file: Path | None) -> str | None:
    if password_file is not None:
        return password_file.read_text().strip("\r\n")
    return unquote(in_url) if in_url is not None else None


class BrokerSettings(BaseModel):
    """The broker connection settings every process shares (mixed into its settings class)."""

    mqtt_url: AnyUrl = Field(
        default=AnyUrl("mqtt://127.0.0.1:1883"),
        description="Broker URL, mqtt://[user:pass@]host:port, or mqtts:// for TLS (default port 8883).",
    )
    mqtt_ca_file: FilePath | None = Field(
        default=None, description="mqtts: PEM CA certificate(s) to verify the broker with; default: system store."
    )
    mqtt_cert_file: FilePath | None = Field(
        default=None, description="mqtts: PEM client certificate, for brokers that require one."
    )
    mqtt_key_file: FilePath | None = Field(default=None, description="mqtts: PEM key of the client certificate.")
    mqtt_password_file: FilePath | None = Field(
        default=None, description="A file holding the broker password (instead of one in the URL), e.g. a secret."
    )

    @model_validator(mode="after")
    def _usable(self) -> Self:
        check_url(str(self.mqtt_url), self.broker_files())
        return self

    def broker_files(self) -> BrokerFiles:
        """The files as :func:`broker_address` takes them."""
        return BrokerFiles(self.mqtt_ca_file, self.mqtt_cert_file, self.mqtt_key_file, self.mqtt_password_file)
