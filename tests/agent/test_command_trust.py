"""The agent trusts its command topic no further than the contract allows (issue 14, finding 7): commands living too
long or issued in the node's future are refused, and provision_key/update only run signed by the pinned controller
key, whether pinned by the installer's file or on first use."""

import asyncio
import base64
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from node_agent.agent import Agent
from node_agent.controller_key import TOFU_FILE, ControllerKeyError
from node_agent.settings import AgentSettings
from schemas import (
    Channel,
    Command,
    CommandResult,
    CommandStatus,
    OpenCommand,
    ProvisionKeyCommand,
    ReserveCommand,
    UpdateCommand,
    decode,
    encode,
    topic,
)
from schemas.command_trust import sign_command
from schemas.release import key_id_for
from tests.agent_mqtt.helpers import build_hardware, pulses, sim_profile
from tests.samples import COMMAND_KEY

NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)
PROFILE = sim_profile()
A1 = PROFILE.compartments[0]
ATTACKER = Ed25519PrivateKey.from_private_bytes(b"\x07" * 32)
KEY = bytes.fromhex("5e" * 32)


def public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes_raw()


def start(tmp_path: Path, key_file: Path | None = None) -> Agent:
    settings = AgentSettings(node_id="node-1", data_dir=tmp_path / "data", controller_key_file=key_file)
    return Agent(settings, build_hardware(PROFILE, working_doors=(A1.id,)), now=lambda: NOW)


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Agent]:
    running = start(tmp_path)
    yield running
    running.close()


def execute(agent: Agent, command: Command) -> CommandResult:
    """Run ``command`` through the executor; return its final result from what the agent queued."""
    asyncio.run(agent.commands.execute(topic(agent.node_id, Channel.COMMAND), encode(command)))
    queued = [
        decode(Channel.RESULT, item.payload) for item in agent.outbox.peek(1000) if item.topic.endswith("/result")
    ]
    answers = [r for r in queued if r.command_id == command.command_id and r.status is not CommandStatus.ACCEPTED]
    return answers[-1]


def provision(command_id: str = "key-1", key: bytes = KEY, signer: Ed25519PrivateKey | None = COMMAND_KEY) -> Command:
    command = ProvisionKeyCommand(
        command_id=command_id,
        node_id="node-1",
        issued_at=NOW,
        expires_at=NOW + timedelta(minutes=10),
        key_hex=key.hex(),
    )
    return command if signer is None else sign_command(command, signer)


def service_open(issued_at: datetime, expires_at: datetime) -> OpenCommand:
    return OpenCommand(
        command_id="open-1", node_id="node-1", issued_at=issued_at, expires_at=expires_at, compartment=A1.id
    )


def test_an_open_expiring_in_2100_is_refused_and_drives_no_relay(agent: Agent) -> None:
    result = execute(agent, service_open(NOW, datetime(2100, 1, 1, tzinfo=UTC)))
    assert result.status is CommandStatus.REJECTED
    assert result.detail is not None and "at most 0:10:00" in result.detail
    assert pulses(agent.hardware.pin_factory.pin(A1.relay_pin)) == []
    assert agent.journal.lookup("open-1") is None  # not journaled under its id
    assert [r.reason for r in agent.journal.rejected()] == ["untrusted"]


def test_a_command_issued_beyond_the_clock_skew_is_refused_and_one_within_runs(agent: Agent) -> None:
    ahead = service_open(NOW + timedelta(minutes=6), NOW + timedelta(minutes=7))
    result = execute(agent, ahead)
    assert result.status is CommandStatus.REJECTED
    assert result.detail is not None and "ahead of this node's clock" in result.detail
    within = ReserveCommand(
        command_id="res-cmd",
        node_id="node-1",
        issued_at=NOW + timedelta(minutes=4),
        expires_at=NOW + timedelta(minutes=9),
        reservation_id="res-1",
        compartment=A1.id,
        opens_at=NOW,
        hold_until=NOW + timedelta(hours=1),
        pickup_until=NOW + timedelta(days=1),
    )
    assert execute(agent, within).status is CommandStatus.DONE


def test_a_forged_unsigned_provision_key_stores_nothing(agent: Agent) -> None:
    forged = provision(key=bytes(32), signer=None)
    result = execute(agent, forged)
    assert result.status is CommandStatus.REJECTED
    assert result.detail == "provision_key must be signed by the controller's command key; it is not signed"
    assert agent.ledger_store.node_key() is None and agent.keypad is None
    assert not (agent.settings.data_dir / TOFU_FILE).exists()  # nothing pinned either
    [kept] = agent.journal.rejected()
    assert bytes(32).hex().encode() not in kept.payload  # refused payloads keep no key either


def test_the_first_signed_provision_key_pins_its_key_and_others_are_refused_after(agent: Agent) -> None:
    assert execute(agent, provision()).status is CommandStatus.DONE
    assert agent.ledger_store.node_key() == KEY
    pinned = agent.settings.data_dir / TOFU_FILE
    assert base64.b64decode(pinned.read_text().strip()) == public(COMMAND_KEY)
    assert stat.S_IMODE(pinned.stat().st_mode) == 0o600

    result = execute(agent, provision("key-2", key=bytes(32), signer=ATTACKER))
    assert result.status is CommandStatus.REJECTED
    expected = f"signed by key {key_id_for(public(ATTACKER))}; this node trusts key {key_id_for(public(COMMAND_KEY))}"
    assert result.detail is not None and result.detail.startswith(expected)
    assert agent.ledger_store.node_key() == KEY


def test_the_key_pinned_on_first_use_holds_across_a_restart(tmp_path: Path) -> None:
    first = start(tmp_path)
    assert execute(first, provision()).status is CommandStatus.DONE
    first.close()
    again = start(tmp_path)
    try:
        assert execute(again, provision("key-2", key=bytes(32), signer=ATTACKER)).status is CommandStatus.REJECTED
        assert again.ledger_store.node_key() == KEY
    finally:
        again.close()


def test_a_node_pinned_by_file_refuses_other_keys_even_on_first_use(tmp_path: Path) -> None:
    key_file = tmp_path / "controller.pub"
    key_file.write_text(base64.b64encode(public(COMMAND_KEY)).decode() + "\n")
    pinned = start(tmp_path, key_file)
    try:
        assert execute(pinned, provision("key-0", key=bytes(32), signer=ATTACKER)).status is CommandStatus.REJECTED
        assert pinned.ledger_store.node_key() is None
        assert execute(pinned, provision()).status is CommandStatus.DONE
        assert pinned.ledger_store.node_key() == KEY
        assert not (pinned.settings.data_dir / TOFU_FILE).exists()
    finally:
        pinned.close()


def test_a_signed_command_changed_after_signing_is_refused(agent: Agent) -> None:
    tampered = provision().model_copy(update={"key_hex": "00" * 32})
    result = execute(agent, tampered)
    assert result.status is CommandStatus.REJECTED
    assert result.detail == f"the signature by key {key_id_for(public(COMMAND_KEY))} does not match the command"
    assert agent.ledger_store.node_key() is None


def test_a_forged_command_does_not_take_the_id_of_the_real_one(agent: Agent) -> None:
    assert execute(agent, provision("key-1", key=bytes(32), signer=None)).status is CommandStatus.REJECTED
    assert execute(agent, provision("key-1")).status is CommandStatus.DONE
    assert agent.ledger_store.node_key() == KEY


def test_an_unsigned_rollback_is_refused_for_its_signature(agent: Agent) -> None:
    rollback = UpdateCommand(
        command_id="up-1",
        node_id="node-1",
        issued_at=NOW,
        expires_at=NOW + timedelta(hours=1),
        rollout_id="ro-1",
        rollback=True,
    )
    result = execute(agent, rollback)
    assert result.status is CommandStatus.REJECTED
    assert result.detail == "update must be signed by the controller's command key; it is not signed"


def test_a_missing_or_malformed_controller_key_file_stops_the_agent_at_start(tmp_path: Path) -> None:
    missing = tmp_path / "absent.pub"
    with pytest.raises(ControllerKeyError, match=f"no controller key at {missing}"):
        start(tmp_path, missing)
    malformed = tmp_path / "bad.pub"
    malformed.write_text("not a key\n")
    with pytest.raises(ControllerKeyError, match="does not hold an Ed25519 public key"):
        start(tmp_path, malformed)
