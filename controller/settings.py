"""Controller configuration: every setting is a ``--flag`` and a ``LOCKERFLEET_*`` environment variable."""

from pathlib import Path

from pydantic import AnyUrl, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ControllerSettings(BaseSettings):
    """Settings of one controller process."""

    model_config = SettingsConfigDict(env_prefix="LOCKERFLEET_", extra="forbid", cli_kebab_case=True)

    mqtt_url: AnyUrl = Field(
        default=AnyUrl("mqtt://127.0.0.1:1883"), description="Broker URL, mqtt://[user:pass@]host:port."
    )
    influx_url: AnyUrl = Field(
        default=AnyUrl("http://127.0.0.1:8086"), description="InfluxDB base URL serving the v1 /write API."
    )
    influx_db: str = Field(default="lockerfleet", min_length=1, description="InfluxDB database (or bucket).")
    influx_token: SecretStr | None = Field(
        default=None, description="InfluxDB 2.x/3.x token, sent as 'Authorization: Token ...'."
    )
    http_host: str = Field(default="127.0.0.1", description="Address the courier API and /metrics bind to.")
    http_port: int = Field(default=8080, ge=1, le=65535, description="Port of the courier API and /metrics.")
    store_path: Path = Field(default=Path("lockerfleet.sqlite3"), description="SQLite file of the fleet store.")


class DemoSettings(BaseSettings):
    """Settings of the demo."""

    model_config = SettingsConfigDict(env_prefix="LOCKERFLEET_", extra="forbid", cli_kebab_case=True)

    nodes: int = Field(default=20, ge=1, le=500, description="Simulated lockers in the demo fleet.")
    run_dir: Path = Field(default=Path(".run/demo"), description="Broker data, agent journals and logs.")
    duration_s: float | None = Field(default=None, gt=0, description="Stop after this many seconds (default: Ctrl-C).")
