"""Valid example messages, one per contract model, for tests that need a realistic payload."""

from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from schemas import (
    Battery,
    CancelCommand,
    CommandCause,
    CommandResult,
    CommandStatus,
    CompartmentInfo,
    CompartmentReading,
    CompartmentSize,
    DoorEvent,
    DoorOutcome,
    DoorResult,
    DoorState,
    KeypadEvent,
    LedgerEvent,
    LedgerTransition,
    LockState,
    OpenCommand,
    OtaEvent,
    OtaState,
    PowerSource,
    ProvisionKeyCommand,
    ReserveCommand,
    StatusBirth,
    StatusDeath,
    Telemetry,
    UpdateCommand,
)
from schemas.command_trust import sign_command
from schemas.release import ReleaseManifest, SignedRelease, signature_for
from schemas.semver import SemVer

T0 = datetime(2026, 11, 24, 12, 0, 0, 123456, tzinfo=UTC)
RELEASE_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
COMMAND_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32, 64)))
"""The controller's command-signing key in tests (signs provision_key and update commands)."""
"""A fixed signing key for sample releases (never a real one)."""


def birth(node_id: str = "node-1", boot_id: int = 3, seq: int = 0) -> StatusBirth:
    """A birth with two compartments."""
    return StatusBirth(
        node_id=node_id,
        boot_id=boot_id,
        seq=seq,
        ts=T0,
        firmware_version="1.4.2",
        hardware_model="rpi4-locker-12",
        telemetry_interval_s=10,
        compartments=[
            CompartmentInfo(id="A1", size=CompartmentSize.S),
            CompartmentInfo(id="B1", size=CompartmentSize.L),
        ],
    )


def death(node_id: str = "node-1", boot_id: int = 3) -> StatusDeath:
    """The last will matching :func:`birth`."""
    return StatusDeath(node_id=node_id, boot_id=boot_id, seq=0, ts=T0)


def telemetry(node_id: str = "node-1", seq: int = 1, soc: float = 87.5, ts: datetime = T0) -> Telemetry:
    """A telemetry sample on battery power with one open door."""
    return Telemetry(
        node_id=node_id,
        boot_id=3,
        seq=seq,
        ts=ts,
        battery=Battery(soc_pct=soc, voltage_v=12.6, charging=False, power_source=PowerSource.BATTERY, cycle_count=41),
        enclosure_temp_c=21.25,
        compartments=[
            CompartmentReading(id="A1", door=DoorState.CLOSED, lock=LockState.LOCKED),
            CompartmentReading(id="B1", door=DoorState.OPEN, lock=LockState.UNLOCKED),
        ],
    )


def door_event(node_id: str = "node-1", seq: int = 2) -> DoorEvent:
    """A door opened by a command."""
    return DoorEvent(
        node_id=node_id,
        boot_id=3,
        seq=seq,
        ts=T0,
        compartment="A1",
        action="opened",
        cause=CommandCause(command_id="cmd-42"),
    )


def open_command(node_id: str = "node-1", ttl_s: float = 30) -> OpenCommand:
    """An open of compartment A1 valid for ``ttl_s`` seconds from :data:`T0`."""
    return OpenCommand(
        command_id="cmd-42",
        node_id=node_id,
        issued_at=T0,
        expires_at=T0 + timedelta(seconds=ttl_s),
        compartment="A1",
    )


def open_result(node_id: str = "node-1") -> CommandResult:
    """A successful open with timings."""
    return CommandResult(
        node_id=node_id,
        boot_id=3,
        seq=3,
        ts=T0,
        command_id="cmd-42",
        status=CommandStatus.DONE,
        outcome=DoorOutcome(compartment="A1", result=DoorResult.OPENED, pulse_ms=500, switch_latency_ms=180),
    )


def reserve_command(node_id: str = "node-1") -> ReserveCommand:
    """A hold of A1 for reservation res-1: deposit within an hour, pickup within two days."""
    return ReserveCommand(
        command_id="cmd-43",
        node_id=node_id,
        issued_at=T0,
        expires_at=T0 + timedelta(seconds=30),
        reservation_id="res-1",
        compartment="A1",
        opens_at=T0,
        hold_until=T0 + timedelta(hours=1),
        pickup_until=T0 + timedelta(days=2),
    )


def cancel_command(node_id: str = "node-1") -> CancelCommand:
    """Release reservation res-1."""
    return CancelCommand(
        command_id="cmd-44",
        node_id=node_id,
        issued_at=T0,
        expires_at=T0 + timedelta(seconds=30),
        reservation_id="res-1",
    )


def provision_key_command(node_id: str = "node-1") -> ProvisionKeyCommand:
    """A node's code key, signed with :data:`COMMAND_KEY`."""
    command = ProvisionKeyCommand(
        command_id="cmd-45", node_id=node_id, issued_at=T0, expires_at=T0 + timedelta(seconds=30), key_hex="ab" * 32
    )
    return sign_command(command, COMMAND_KEY)


def ledger_event(node_id: str = "node-1") -> LedgerEvent:
    """Reservation res-1 was picked up with a code typed at the locker."""
    return LedgerEvent(
        node_id=node_id,
        boot_id=3,
        seq=4,
        ts=T0,
        compartment="A1",
        transition=LedgerTransition.PICKED_UP,
        reservation_id="res-1",
        via="code",
    )


def keypad_event(node_id: str = "node-1") -> KeypadEvent:
    """The codes starting with 4 locked for 15 minutes, after ten wrong codes of that scope."""
    return KeypadEvent(
        node_id=node_id,
        boot_id=3,
        seq=5,
        ts=T0,
        locked_until=T0 + timedelta(minutes=15),
        wrong_attempts=10,
        scope="4",
    )


def release_manifest(version: str = "1.5.0", size: int = 1024, sha256: str = "ab" * 32) -> ReleaseManifest:
    """A manifest for rpi4-locker-12, floor 1.4.0, valid 30 days from T0 (whole seconds)."""
    created = T0.replace(microsecond=0)
    return ReleaseManifest(
        version=SemVer.parse(version),
        hardware_models=("rpi4-locker-12",),
        min_version=SemVer.parse("1.4.0"),
        artifact_name=f"lockerfleet-{version}.tar",
        size=size,
        sha256=sha256,
        created_at=created,
        expires_at=created + timedelta(days=30),
        notes="door timing fix",
    )


def signed_release(manifest: ReleaseManifest | None = None) -> SignedRelease:
    """``manifest`` (default :func:`release_manifest`) signed with :data:`RELEASE_KEY`."""
    manifest = manifest or release_manifest()
    return SignedRelease(manifest=manifest, signatures=(signature_for(manifest, RELEASE_KEY),))


def update_command(node_id: str = "node-1") -> UpdateCommand:
    """Install the sample release from the controller (signed with :data:`COMMAND_KEY`)."""
    command = UpdateCommand(
        command_id="cmd-46",
        node_id=node_id,
        issued_at=T0,
        expires_at=T0 + timedelta(hours=1),
        rollout_id="ro-1",
        release=signed_release(),
        artifact_urls=("http://controller:8080/v1/releases/1.5.0/artifact",),
    )
    return sign_command(command, COMMAND_KEY)


def ota_event(node_id: str = "node-1", state: OtaState = OtaState.DOWNLOADING, reason: str | None = None) -> OtaEvent:
    """The sample update at ``state``; by default halfway through its download."""
    downloading = state is OtaState.DOWNLOADING
    return OtaEvent(
        node_id=node_id,
        boot_id=3,
        seq=6,
        ts=T0,
        rollout_id="ro-1",
        command_id="cmd-46",
        state=state,
        reason=reason,
        from_version=SemVer.parse("1.4.2"),
        to_version=SemVer.parse("1.5.0"),
        slot="b",
        bytes_done=512 if downloading else None,
        bytes_total=1024 if downloading else None,
    )
