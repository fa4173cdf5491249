"""Agent configuration: every setting is a ``--flag`` and a ``LOCKERFLEET_*`` environment variable."""

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Literal

from pydantic import AnyUrl, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas import PowerSource
from schemas.broker import BrokerSettings
from schemas.types import NodeId, ShortText, SiteId


def _package_version() -> str:
    try:
        return version("lockerfleet")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0.0.0+source"


class AgentSettings(BrokerSettings, BaseSettings):
    """Settings of the agent running on one locker."""

    model_config = SettingsConfigDict(env_prefix="LOCKERFLEET_", extra="forbid", cli_kebab_case=True)

    node_id: NodeId = Field(default="node-0", description="This locker's id; one MQTT topic level and the client id.")
    board_profile: Path | None = Field(
        default=None,
        description="This locker's TOML board profile (pins, battery, temperature); required: no default board.",
    )
    data_dir: Path = Field(default=Path("agent-data"), description="Where the journal and outbox live.")
    controller_key_file: Path | None = Field(
        default=None,
        description="The controller's command-signing public key (the public_key line it logs at start); signed "
        "commands must carry it. Unset: the first signing key seen is pinned in data-dir/controller-key.pub.",
    )
    telemetry_interval_s: float = Field(default=10.0, gt=0, description="Seconds between telemetry samples.")
    outbox_capacity: int = Field(
        default=50_000,
        ge=1,
        description="Messages held while offline; beyond it the oldest telemetry is dropped.",
    )
    replay_rate_per_s: float = Field(default=200.0, gt=0, description="Upper bound on replay speed after a partition.")
    command_retention_s: float = Field(
        default=7 * 24 * 3600.0,
        gt=0,
        description="How long past its expiry a command id is remembered (beyond any command's lifetime).",
    )
    keepalive_s: int = Field(default=30, ge=5, le=3600, description="MQTT keepalive; a dead link is noticed in 1.5x.")
    reconnect_max_s: float = Field(default=30.0, gt=0, description="Longest pause between reconnect attempts.")
    firmware_version: ShortText = Field(default_factory=_package_version, description="Reported in the birth.")
    site: SiteId | None = Field(default=None, description="The site this locker stands at, reported in the birth.")
    ota_shim: Literal["venv-slots", "sim", "tryboot"] = Field(
        default="venv-slots",
        description="How this platform installs, switches and rolls back releases (firmware-shims/README.md): "
        "venv-slots on Raspberry Pi OS, sim for the simulator and tests (restarts in-process), tryboot for A/B images.",
    )
    base: Path | None = Field(
        default=None,
        description="Where the OTA shim keeps its slots; the same LOCKERFLEET_BASE the systemd unit's start counter "
        "reads. Default: /opt/lockerfleet (venv-slots), data-dir/slots (sim), /boot/firmware (tryboot).",
    )
    trusted_keys_file: Path | None = Field(
        default=None,
        description="The pinned release keys (trusted_keys.json); a release that rotates keys replaces it on "
        "commit, so it must be writable. Default: data-dir/trusted_keys.json.",
    )
    max_starts: int = Field(
        default=3,
        ge=1,
        le=20,
        description="Trial starts of a new release before it is rolled back; keep it equal to the systemd unit's "
        "LOCKERFLEET_MAX_STARTS (the same variable).",
    )
    ota_lookahead_s: float = Field(
        default=900.0,
        ge=0,
        description="An update waits while a held reservation's deposit window is open or opens within this many "
        "seconds, or a parcel's pickup deadline falls within it.",
    )
    ota_min_battery_pct: float = Field(
        default=40.0,
        ge=0,
        le=100,
        description="Off shore power, an update waits while the battery is below this state of charge.",
    )
    ota_gate_poll_s: float = Field(
        default=30.0, gt=0, description="How often a deferred update asks again whether the locker is idle."
    )
    ota_health_timeout_s: float = Field(
        default=60.0, gt=0, description="Longest a trial start's health check may take before it counts as failed."
    )


class SimSettings(BaseSettings):
    """Settings of the fleet simulator."""

    model_config = SettingsConfigDict(env_prefix="LOCKERFLEET_", extra="forbid", cli_kebab_case=True)

    nodes: int = Field(
        default=20,
        ge=1,
        description="How many simulated lockers this process runs; refused beyond what its file descriptor limit "
        "allows (about 12 per node): spread a bigger fleet over processes with --node-offset.",
    )
    node_offset: int = Field(
        default=0, ge=0, description="Number of this process's first node (sim-<offset>…), to spread a fleet."
    )
    mqtt_url: AnyUrl = Field(default=AnyUrl("mqtt://127.0.0.1:1883"), description="Broker URL every node uses.")
    node_prefix: str = Field(default="sim", pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,40}$", description="Node id prefix.")
    board_profile: Path | None = Field(default=None, description="Sim board profile TOML; default: the shipped one.")
    data_dir: Path = Field(default=Path(".run/sim"), description="Per-node journals and outboxes live here.")
    telemetry_interval_s: float = Field(default=5.0, gt=0, description="Seconds between telemetry samples per node.")
    jam_share: float = Field(default=0.05, ge=0, le=1, description="Share of doors that are jammed.")
    door_dwell_s: float = Field(default=20.0, gt=0, description="Mean seconds a door stays open once opened.")
    power_source: PowerSource = Field(default=PowerSource.SHORE, description="Power source of every node.")
    ramp_s: float = Field(default=5.0, ge=0, description="Spread node start-ups over this many seconds.")
    seed: int = Field(default=1, description="Random seed: the same seed gives the same fleet.")
    sites: list[SiteId] = Field(
        default_factory=list, description="Sites the nodes are spread over, round robin (default: none reported)."
    )
    duration_s: float | None = Field(default=None, gt=0, description="Stop after this many seconds (default: never).")
    firmware_version: ShortText = Field(
        default="1.0.0", description="The release every node starts with (installed as its committed sim slot)."
    )
    trusted_keys_file: Path | None = Field(
        default=None,
        description="Release keys the nodes pin (copied into each node's data dir); without it updates are refused.",
    )
    ota_fail: list[NodeId] = Field(
        default_factory=list, description="Nodes whose trial starts always fail, so their updates roll back."
    )
    ota_fail_share: float = Field(
        default=0.0, ge=0, le=1, description="Share of the other nodes whose trial starts always fail (seeded)."
    )
    ota_gate_poll_s: float = Field(
        default=30.0, gt=0, description="How often a deferred update asks again whether the locker is idle."
    )
    faults: str = Field(
        default="",
        description="Faults of chosen nodes, node=fault pairs separated by commas (@site: every node there), e.g. "
        "'sim-0003=drain:fast,sim-0007=heater,sim-0009=latch:A2,@north=uplink'; kinds: drain, pack, heater, latch, "
        "wear, intruder, swap, door, lock, offline, uplink, stale, outbox, clock (README: Simulator faults).",
    )
    faults_file: Path | None = Field(
        default=None, description='The same as TOML: [faults] with sim-0003 = ["drain:fast", "swap:600"].'
    )

    @field_validator("faults")
    @classmethod
    def _faults_valid(cls, text: str) -> str:
        from node_agent.sim.faults import parse_faults  # noqa: PLC0415 - node_agent.sim loads gpiozero

        parse_faults(text)
        return text

    @field_validator("faults_file")
    @classmethod
    def _faults_file_valid(cls, path: Path | None) -> Path | None:
        from node_agent.sim.faults import load_faults_file  # noqa: PLC0415 - node_agent.sim loads gpiozero

        if path is not None:
            load_faults_file(path)
        return path
