"""Controller configuration: every setting is a ``--flag`` and a ``LOCKERFLEET_*`` environment variable."""

from pathlib import Path

from pydantic import AnyUrl, BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from controller.reservations.contention import Priority
from controller.reservations.limits import DEFAULT_PRIORITIES
from schemas.broker import BrokerSettings


class ControllerSettings(BrokerSettings, BaseSettings):
    """Settings of one controller process."""

    model_config = SettingsConfigDict(env_prefix="LOCKERFLEET_", extra="forbid", cli_kebab_case=True)

    influx_url: AnyUrl = Field(
        default=AnyUrl("http://127.0.0.1:8086"), description="InfluxDB base URL serving the v1 /write API."
    )
    influx_db: str = Field(default="lockerfleet", min_length=1, description="InfluxDB database (or bucket).")
    influx_token: SecretStr | None = Field(
        default=None, description="InfluxDB 2.x/3.x token, sent as 'Authorization: Token ...'."
    )
    http_host: str = Field(default="127.0.0.1", description="Address the courier API and /metrics bind to.")
    http_port: int = Field(default=8080, ge=1, le=65535, description="Port of the courier API and /metrics.")
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Addresses of reverse proxies whose X-Forwarded-For is believed (none by default: the per-address "
        "limits then use the connecting address, which a client cannot forge).",
    )
    metrics_token_file: Path | None = Field(
        default=None,
        description="File holding a bearer token /metrics then requires (Prometheus: authorization.credentials_file); "
        "without it /metrics answers anyone who reaches the port.",
    )
    max_body_bytes: int = Field(
        default=16_384, ge=1024, le=10_485_760, description="Largest request body accepted (413 above it)."
    )
    failed_auth_per_min: float = Field(
        default=30.0, gt=0, description="Requests without a valid key allowed per minute from one address (then 429)."
    )
    store_path: Path = Field(default=Path("lockerfleet.sqlite3"), description="SQLite file of the fleet store.")
    reservations_url: str | None = Field(
        default=None,
        description="Reservation store as a SQLAlchemy URL (postgresql+psycopg://…); default: SQLite by store-path.",
    )
    sites_file: Path | None = Field(
        default=None, description='JSON list of sites: [{"site_id": "centre", "lat": 52.52, "lon": 13.40}, …].'
    )
    client_id: str = Field(
        default="lockerfleet-controller",
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="MQTT client id; the broker keeps this session (and unacknowledged messages) across restarts.",
    )
    share_group: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="Share telemetry and events among controller processes with this MQTT 5 shared subscription.",
    )
    session_expiry_s: int = Field(
        default=3600,
        ge=1,
        le=31_536_000,
        description="How long the broker keeps this controller's sessions after it went away: what is queued for it "
        "(with --share-group, also the share of telemetry and events the broker keeps routing to it) waits this long "
        "for a restart with the same --client-id, then the broker discards it.",
    )
    receive_maximum: int = Field(
        default=20000,
        ge=10,
        le=65535,
        description="Telemetry messages the broker may deliver before InfluxDB stored them (the ingest buffer).",
    )
    control_receive_maximum: int = Field(
        default=2000,
        ge=10,
        le=65535,
        description="Statuses, results and events the broker may deliver before they are spooled and acknowledged.",
    )
    batch_max_lines: int = Field(default=5000, ge=1, description="Write to InfluxDB once this many lines wait.")
    batch_max_age_s: float = Field(default=0.1, gt=0, le=60, description="Write waiting lines at least this often.")
    open_timeout_s: float = Field(
        default=10.0, gt=0, le=300, description="How long a courier open waits for the node; also the command's expiry."
    )
    open_rate_per_min: float = Field(
        default=600.0,
        gt=0,
        description="Fleet-wide limit on courier opens per minute (a circuit breaker against mass remote opening).",
    )
    open_burst: int = Field(default=50, ge=1, description="Opens allowed at once before the per-minute rate applies.")
    open_rate_per_key_per_min: float = Field(
        default=30.0, gt=0, description="Limit on opens per minute by one operator or partner key (checked first)."
    )
    open_burst_per_key: int = Field(default=10, ge=1, description="Opens one key may make at once.")
    courier_rate_per_min: float = Field(
        default=600.0, gt=0, description="Reservation API requests per minute per API key (and twice that per IP)."
    )
    courier_burst: int = Field(default=100, ge=1, description="Requests per API key allowed at once.")
    hold_lead_max_h: float = Field(
        default=48.0,
        gt=0,
        le=90 * 24,
        description="Reservation requests whose expected arrival is further ahead get 422: a compartment is held "
        "from the request on, so at most this many hours before the arrival.",
    )
    site_quota_share: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="Share of a site's compartments one partner may keep pending, held or waitlisted (409 beyond "
        "it), unless its key sets --quota-per-site.",
    )
    stored_receipt_s: float = Field(
        default=30.0,
        ge=0,
        le=3600,
        description="Tell each node what was stored this often (one small message per node per interval, only when "
        "something new was stored), so it can forget it; 0 turns receipts off (nodes forget at the broker's PUBACK).",
    )
    fleet_snapshot_s: float = Field(
        default=10.0, gt=0, description="Write node counts by state to InfluxDB (measurement fleet) this often."
    )
    kpi_every_s: float = Field(
        default=300.0,
        gt=0,
        description="Compute the field KPIs of the last day (measurement kpi, lockerfleet_kpi_* gauges) this often.",
    )
    dead_letter_max_bytes: int = Field(
        default=4096, ge=0, le=65536, description="Bytes of a refused payload kept in the dead_letter measurement."
    )
    webhook_allow_private: bool = Field(
        default=False,
        description="Deliver webhooks to loopback, private, link-local and multicast addresses too (refused by "
        "default: a webhook URL must not reach into the controller's own network).",
    )
    alert_rules_file: Path | None = Field(
        default=None,
        description="Alert rules (TOML) overriding the built-in defaults for the fleet and per site "
        "(controller/alerts/rules.example.toml); a bad file stops the controller at start, naming rule and field.",
    )
    alert_eval_s: float = Field(
        default=15.0, gt=0, le=3600, description="Evaluate every alert rule for every node this often (and on data)."
    )
    releases_dir: Path = Field(
        default=Path("releases"),
        description="Published releases served at /v1/releases (fill it with `lockerfleet release publish`).",
    )
    public_url: AnyUrl | None = Field(
        default=None,
        description="This controller's URL as lockers reach it, for the artifact URLs of update commands (default: "
        "http://<http-host>:<http-port>, which is wrong when binding 0.0.0.0 or behind a proxy).",
    )
    rollout_tick_s: float = Field(
        default=1.0, gt=0, le=60, description="Step every running rollout (dispatch, timeouts) this often."
    )
    field_healthy_for_s: float = Field(
        default=900.0,
        ge=0,
        le=7 * 86400,
        description="A work order closes once telemetry showed the fix and the node then stayed online with no other "
        "critical alert this long.",
    )
    field_soc_jump_pct: float = Field(
        default=30.0,
        gt=0,
        le=100,
        description="A rise of charge this big between two samples, neither charging, proves a battery swap.",
    )

    @field_validator("alert_rules_file")
    @classmethod
    def _alert_rules_valid(cls, path: Path | None) -> Path | None:
        from controller.alerting.rules import load_rules  # noqa: PLC0415 - admin commands never parse rules

        load_rules(path)  # RulesFileError is a ValueError: the settings error names the file, rule and field
        return path

    def artifact_base_url(self) -> str:
        """Where lockers download artifacts from: ``--public-url``, else this controller's HTTP address."""
        if self.public_url is not None:
            return str(self.public_url).rstrip("/")
        return f"http://{self.http_host}:{self.http_port}"


class DemoSettings(BaseSettings):
    """Settings of the demo."""

    model_config = SettingsConfigDict(env_prefix="LOCKERFLEET_", extra="forbid", cli_kebab_case=True)

    nodes: int = Field(default=20, ge=1, le=500, description="Simulated lockers in the demo fleet.")
    run_dir: Path = Field(default=Path(".run/demo"), description="Broker data, agent journals and logs.")
    duration_s: float | None = Field(default=None, gt=0, description="Stop after this many seconds (default: Ctrl-C).")
    http_port: int = Field(
        default=8080, ge=0, le=65535, description="Port of the demo's courier API (0: any free port)."
    )


class StoreLocation(BaseModel):
    """Where the controller's store is, for the commands that manage keys in it (mixed into their settings)."""

    store_path: Path = Field(default=Path("lockerfleet.sqlite3"), description="As for the controller.")
    reservations_url: str | None = Field(default=None, description="As for the controller.")

    def store_url(self) -> str:
        """The store the controller with the same settings uses."""
        return self.reservations_url or reservations_sqlite_url(self.store_path)


class NewStore(StoreLocation):
    """A store location for commands that write keys: they refuse to start a store unless told to."""

    create_store: bool = Field(
        default=False,
        description="Start a new store if there is none at --store-path / --reservations-url; without it the "
        "command refuses, since a key in a store the controller does not read gets 401.",
    )


class KeySettings(NewStore, BaseSettings):
    """Settings of ``lockerfleet keys``: issue a courier partner's API key (and register its webhook)."""

    model_config = SettingsConfigDict(env_prefix="LOCKERFLEET_", extra="forbid", cli_kebab_case=True)

    partner: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
        description="The courier partner's name: 1 to 64 letters, digits, '_', '.' or '-', starting with a letter "
        "or digit.",
    )
    sites: list[str] = Field(min_length=1, description='Sites the key may reserve at, e.g. \'["centre","north"]\'.')
    sites_file: Path | None = Field(
        default=None,
        description="The controller's --sites-file; when given, every --sites entry must be one of its sites.",
    )
    webhook_url: str | None = Field(default=None, description="Where the partner receives signed reservation events.")
    webhook_allow_private: bool = Field(
        default=False, description="Accept a --webhook-url on a loopback, private, link-local or multicast address."
    )
    priorities: list[Priority] = Field(
        default_factory=lambda: sorted(DEFAULT_PRIORITIES),
        min_length=1,
        description="Request priorities the key may use, e.g. 0,1 (0 normal, 1 peak-hour return, 2 perishable; a "
        "higher one may take the compartments kept back from lower ones).",
    )
    quota_per_site: int | None = Field(
        default=None,
        ge=1,
        description="Reservations the partner may keep pending, held or waitlisted per site with this key "
        "(default: the controller's --site-quota-share of the site's compartments).",
    )


class OperatorKeySettings(NewStore, BaseSettings):
    """Settings of ``lockerfleet operator-key``: issue an operator's API key (the ``/v1/nodes`` API)."""

    model_config = SettingsConfigDict(env_prefix="LOCKERFLEET_", extra="forbid", cli_kebab_case=True)

    operator: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$",
        description="Who holds the key (named in logs and views): 1 to 64 letters, digits, '_', '.', '@' or '-', "
        "starting with a letter or digit.",
    )


class TechnicianKeySettings(NewStore, BaseSettings):
    """Settings of ``lockerfleet technician-key``: register a field technician and issue their key (``/field``)."""

    model_config = SettingsConfigDict(env_prefix="LOCKERFLEET_", extra="forbid", cli_kebab_case=True)

    technician: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$",
        description="Who holds the key (their routes and work orders name them): 1 to 64 letters, digits, '_', '.', "
        "'@' or '-', starting with a letter or digit.",
    )
    start: str = Field(
        pattern=r"^\s*-?\d+(\.\d+)?\s*,\s*-?\d+(\.\d+)?\s*$",
        description="Where their day starts and ends, 'LAT,LON' in degrees (e.g. 52.52,13.40).",
    )
    max_stops: int = Field(default=8, ge=1, le=200, description="Stops they can make in a day.")

    @field_validator("start")
    @classmethod
    def _start_on_earth(cls, start: str) -> str:
        lat, lon = (float(x) for x in start.split(","))
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise ValueError(f"{start!r} is not a position: latitude within ±90, longitude within ±180")
        return start

    def start_point(self) -> tuple[float, float]:
        """``--start`` as (lat, lon)."""
        lat, lon = (float(x) for x in self.start.split(","))
        return lat, lon


class RevokeKeySettings(StoreLocation, BaseSettings):
    """Settings of ``lockerfleet revoke-key``: revoke a courier partner's or an operator's API key."""

    model_config = SettingsConfigDict(env_prefix="LOCKERFLEET_", extra="forbid", cli_kebab_case=True)

    key_id: str = Field(
        pattern=r"^[0-9a-f]{16}$",
        description="The key's id: the 16 hex digits after lf_ or lfop_ in the token (never send the whole token).",
    )


class OperatorWebhookSettings(NewStore, BaseSettings):
    """Settings of ``lockerfleet operator-webhook``: where the controller sends signed alert notifications."""

    model_config = SettingsConfigDict(env_prefix="LOCKERFLEET_", extra="forbid", cli_kebab_case=True)

    url: str | None = Field(
        default=None, pattern=r"^https?://", description="The endpoint's http:// or https:// URL (unless --remove)."
    )
    name: str = Field(
        default="default",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,54}$",
        description="Names the endpoint (several may be set): 1 to 55 letters, digits, '_', '.' or '-', starting "
        "with a letter or digit.",
    )
    remove: bool = Field(default=False, description="Stop sending to the endpoint --name.")
    webhook_allow_private: bool = Field(
        default=False,
        description="Accept a --url on a loopback, private, link-local or multicast address (the controller "
        "delivers there only with its own --webhook-allow-private).",
    )


def reservations_sqlite_url(store_path: Path) -> str:
    """Default reservation store: an SQLite file beside the fleet store."""
    return f"sqlite:///{store_path.with_name(store_path.stem + '-reservations.sqlite3')}"
