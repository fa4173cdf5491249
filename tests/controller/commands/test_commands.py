"""The command owner: results routed by command id alone, to waiters and to handlers, with nothing left behind."""

import asyncio
import base64
from datetime import UTC, datetime, timedelta

import pytest

from controller.commands.service import Commands, reserve_command_id
from controller.commands.signing import command_signing_key, public_key_line
from schemas import Channel, CommandResult, CommandStatus, decode, topic
from schemas.codes import node_key
from schemas.command_trust import verify_command
from tests import samples

NOW = samples.T0.timestamp()


class Recorder:
    """Keeps what would have been published (the publisher is an adapter; this tests the owner's logic)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, float]] = []

    def publish(self, topic: str, payload: bytes, expiry_s: float) -> None:
        self.sent.append((topic, payload, expiry_s))


def result_of(command_id: str, status: CommandStatus, node_id: str = "node-1") -> CommandResult:
    return samples.open_result(node_id).model_copy(update={"command_id": command_id, "status": status, "outcome": None})


def test_a_sent_command_is_published_on_its_nodes_command_topic_with_its_lifetime() -> None:
    recorder = Recorder()
    commands = Commands(recorder, lambda: NOW)
    command = commands.open("node-1", "A1", 7.5)
    commands.send(command)
    [(sent_topic, payload, expiry_s)] = recorder.sent
    assert sent_topic == topic("node-1", Channel.COMMAND)
    assert decode(Channel.COMMAND, payload) == command
    assert expiry_s == 7.5


def test_every_resend_of_a_reservations_hold_carries_the_same_id_and_other_reservations_differ() -> None:
    commands = Commands(Recorder(), lambda: NOW)
    at = datetime.fromtimestamp(NOW, UTC)
    args = ("node-1", "A1", at, at + timedelta(hours=1), at + timedelta(days=1), timedelta(minutes=5))
    first, again = commands.reserve("res-1", *args), commands.reserve("res-1", *args)
    assert first.command_id == again.command_id == reserve_command_id("res-1")
    assert commands.reserve("res-2", *args).command_id != first.command_id


def test_results_reach_the_handler_registered_at_send_until_a_final_one() -> None:
    commands = Commands(Recorder(), lambda: NOW)
    seen: list[CommandStatus] = []
    command = commands.open("node-1", "A1", 10)
    commands.send(command, lambda r: seen.append(r.status))
    commands.on_result(result_of(command.command_id, CommandStatus.ACCEPTED))
    commands.on_result(result_of(command.command_id, CommandStatus.REJECTED))
    commands.on_result(result_of(command.command_id, CommandStatus.DUPLICATE))  # after the final one: not followed
    commands.on_result(result_of("someone-else", CommandStatus.REJECTED))
    assert seen == [CommandStatus.ACCEPTED, CommandStatus.REJECTED]
    assert commands.in_flight == 0


def test_a_handler_tracked_after_a_restart_gets_the_result_of_a_command_sent_before_it() -> None:
    commands = Commands(Recorder(), lambda: NOW)  # a new process: nothing was sent from here
    seen: list[str] = []
    until = datetime.fromtimestamp(NOW, UTC) + timedelta(minutes=5)
    commands.track(reserve_command_id("res-9"), lambda r: seen.append(r.command_id), until)
    commands.on_result(result_of(reserve_command_id("res-9"), CommandStatus.REJECTED))
    assert seen == [reserve_command_id("res-9")]


def test_a_request_gets_the_final_result_and_ignores_accepted() -> None:
    recorder = Recorder()
    commands = Commands(recorder, lambda: NOW)

    async def scenario() -> CommandResult | None:
        command = commands.open("node-1", "A1", 5)
        waiting = asyncio.ensure_future(commands.request(command, 5))
        await asyncio.sleep(0)
        commands.on_result(result_of(command.command_id, CommandStatus.ACCEPTED))
        commands.on_result(result_of(command.command_id, CommandStatus.DONE))
        return await waiting

    answer = asyncio.run(scenario())
    assert answer is not None and answer.status is CommandStatus.DONE
    assert len(recorder.sent) == 1 and commands.in_flight == 0


def test_a_request_without_answer_returns_none_and_leaves_no_waiter() -> None:
    commands = Commands(Recorder(), lambda: NOW)
    command = commands.open("node-1", "A1", 0.05)
    assert asyncio.run(commands.request(command, 0.05)) is None
    assert commands.in_flight == 0
    commands.on_result(result_of(command.command_id, CommandStatus.DONE))  # late: only stored, nobody waits
    assert commands.in_flight == 0


def test_a_provision_key_is_signed_with_the_key_derived_from_the_controller_secret() -> None:
    secret = b"controller secret for tests only"
    signer = command_signing_key(secret)
    public = signer.public_key().public_bytes_raw()
    assert command_signing_key(secret).public_key().public_bytes_raw() == public  # every controller on the store
    assert command_signing_key(b"another secret").public_key().public_bytes_raw() != public
    recorder = Recorder()
    commands = Commands(recorder, lambda: NOW, signer=signer)
    commands.send(commands.provision_key("node-1", 1, 0, node_key(secret, "node-1").hex()))
    [(_topic, payload, _expiry)] = recorder.sent
    received = decode(Channel.COMMAND, payload)
    assert verify_command(received, base64.b64decode(public_key_line(signer))) == public


def test_without_a_signing_key_no_provision_key_is_built() -> None:
    with pytest.raises(RuntimeError, match="unsigned provision_key"):
        Commands(Recorder(), lambda: NOW).provision_key("node-1", 1, 0, "ab" * 32)
