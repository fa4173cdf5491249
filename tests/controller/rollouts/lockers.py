"""Crafted lockers for the rollout runner's live tests: births and ``ota`` reports published over a real broker, and
the update commands the controller sends captured from it."""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from controller.releases import create_key, make_manifest, publish, sign
from schemas import (
    CancelUpdateCommand,
    Channel,
    CommandResult,
    CommandStatus,
    CompartmentInfo,
    CompartmentSize,
    OtaEvent,
    OtaState,
    StatusBirth,
    Telemetry,
    UpdateCommand,
    decode,
    encode,
    topic,
)
from schemas.semver import SemVer
from tests.harness.mqtt import Capture, connect, disconnect, wait_until
from tests.samples import telemetry

MarkerSender = Callable[[str, bytes, float], None]
"""The controller's command publisher (``CommandLink.publish``): what it sends reaches a subscriber in order."""

MODEL = "rpi4-locker-12"
RELEASE = "1.5.0"


def published_release(tmp_path: Path, version: str = RELEASE) -> Path:
    """A releases directory holding one signed release of a small artifact; returns the directory."""
    artifact = tmp_path / f"lockerfleet-{version}.tar"
    artifact.write_bytes(bytes(range(256)) * 64)
    key = tmp_path / "release-signing.key"
    if not key.exists():
        create_key(key)
    manifest = make_manifest(
        artifact,
        version=SemVer.parse(version),
        hardware_models=[MODEL],
        min_version=SemVer.parse(version),
        now=datetime.now(UTC).replace(microsecond=0),
        valid_for=timedelta(days=30),
    )
    releases = tmp_path / "releases"
    publish(sign(manifest, key), artifact, releases)
    return releases


class Lockers:
    """Pretend lockers: they are born, report OTA steps, and the update commands sent to them are captured."""

    def __init__(self, mqtt_url: str) -> None:
        self._client = connect(mqtt_url)
        self.commands = Capture(mqtt_url, "lockers/v1/+/command")
        self._seq: dict[str, int] = {}

    def born(self, node_id: str, site: str, version: str = "1.4.2", compartments: int = 4) -> None:
        """Publish a retained birth (online for an hour without telemetry) and a telemetry sample (battery 90 %)."""
        birth = StatusBirth(
            node_id=node_id,
            boot_id=1,
            seq=self._next(node_id),
            ts=datetime.now(UTC),
            firmware_version=version,
            hardware_model=MODEL,
            telemetry_interval_s=3600,
            compartments=[CompartmentInfo(id=f"A{i}", size=CompartmentSize.S) for i in range(1, compartments + 1)],
            site=site,
        )
        self._publish(topic(node_id, Channel.STATUS), encode(birth), retain=True)
        sample: Telemetry = telemetry(node_id, seq=self._next(node_id), soc=90.0, ts=datetime.now(UTC))
        self._publish(topic(node_id, Channel.TELEMETRY), encode(sample.model_copy(update={"boot_id": 1})))

    def report(self, command: UpdateCommand, state: OtaState, reason: str | None = None) -> None:
        """Publish the node's ``ota`` report of ``command`` at ``state``."""
        downloading = state is OtaState.DOWNLOADING
        event = OtaEvent(
            node_id=command.node_id,
            boot_id=1,
            seq=self._next(command.node_id),
            ts=datetime.now(UTC),
            rollout_id=command.rollout_id,
            command_id=command.command_id,
            state=state,
            reason=reason,
            from_version=SemVer.parse("1.4.2"),
            to_version=command.release.manifest.version if command.release else None,
            bytes_done=10 if downloading else None,
            bytes_total=100 if downloading else None,
        )
        self._publish(topic(command.node_id, Channel.EVENT), encode(event))

    def answer(self, command: UpdateCommand, status: CommandStatus, detail: str) -> None:
        """Publish the node's command result for ``command`` (a refusal, e.g. a signature it does not trust)."""
        result = CommandResult(
            node_id=command.node_id,
            boot_id=1,
            seq=self._next(command.node_id),
            ts=datetime.now(UTC),
            command_id=command.command_id,
            status=status,
            detail=detail,
        )
        self._publish(topic(command.node_id, Channel.RESULT), encode(result))

    def updates(self) -> list[UpdateCommand]:
        """Every update command delivered so far, in order."""
        found = []
        for delivered in self.commands.snapshot():
            if "/marker-" in delivered.topic:
                continue
            command = decode(Channel.COMMAND, delivered.payload)
            if isinstance(command, UpdateCommand):
                found.append(command)
        return found

    def cancels(self) -> list[CancelUpdateCommand]:
        """Every cancel of an update delivered so far, in order."""
        found = []
        for delivered in self.commands.snapshot():
            if "/marker-" in delivered.topic:
                continue
            command = decode(Channel.COMMAND, delivered.payload)
            if isinstance(command, CancelUpdateCommand):
                found.append(command)
        return found

    def wait_for_updates(self, count: int, timeout_s: float = 10.0) -> list[UpdateCommand]:
        """Wait until ``count`` update commands were delivered; return them all."""
        wait_until(lambda: len(self.updates()) >= count, timeout_s)
        return self.updates()

    def settled(self, send_marker: MarkerSender) -> list[UpdateCommand]:
        """Every update command the controller published before now (a marker it publishes after them arrived)."""
        marker = f"marker-{len(self.commands.snapshot())}"
        send_marker(topic(marker, Channel.COMMAND), b"{}", 60)
        assert wait_until(lambda: any(d.topic == topic(marker, Channel.COMMAND) for d in self.commands.snapshot()), 10)
        return self.updates()

    def close(self) -> None:
        """Disconnect both clients."""
        self.commands.close()
        disconnect(self._client)

    def _next(self, node_id: str) -> int:
        self._seq[node_id] = self._seq.get(node_id, 0) + 1
        return self._seq[node_id]

    def _publish(self, topic_name: str, payload: bytes, *, retain: bool = False) -> None:
        self._client.publish(topic_name, payload, qos=1, retain=retain).wait_for_publish(5)
