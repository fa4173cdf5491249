"""Agent configuration: every setting is a ``--flag`` and a ``LOCKERFLEET_*`` environment variable."""

from pathlib import Path

from pydantic import AnyUrl, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.types import NodeId


class AgentSettings(BaseSettings):
    """Settings of the agent running on one locker."""

    model_config = SettingsConfigDict(env_prefix="LOCKERFLEET_", extra="forbid", cli_kebab_case=True)

    node_id: NodeId = Field(default="node-0", description="This locker's id; one MQTT topic level.")
    mqtt_url: AnyUrl = Field(
        default=AnyUrl("mqtt://127.0.0.1:1883"), description="Broker URL, mqtt://[user:pass@]host:port."
    )
    data_dir: Path = Field(default=Path("agent-data"), description="Where the journal and outbox live.")
    telemetry_interval_s: float = Field(default=10.0, gt=0, description="Seconds between telemetry samples.")
