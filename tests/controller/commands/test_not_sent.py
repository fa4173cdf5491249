"""A command that surely never left the controller: nothing is followed or awaited for it, and an open answers
``broker_down`` (HTTP 503) instead of a false 500 or a 504 after waiting."""

import asyncio

import pytest

from controller.commands.opens import OpenRefusedError, Opens, Refusal
from controller.commands.service import CommandNotSentError, Commands
from controller.fleet.registry import Fleet, NodeState
from controller.metrics import Metrics
from tests import samples

NOW = samples.T0.timestamp()


class RefusingPublisher:
    """A publisher whose queue is full."""

    def __init__(self) -> None:
        self.attempts = 0

    def publish(self, topic: str, payload: bytes, expiry_s: float) -> None:
        self.attempts += 1
        raise CommandNotSentError(f"queue full; {topic} refused")


def test_a_command_not_sent_leaves_no_handler_and_no_waiter() -> None:
    commands = Commands(RefusingPublisher(), lambda: NOW)
    with pytest.raises(CommandNotSentError):
        commands.send(commands.open("node-1", "A1", 10), lambda _r: None)
    assert commands.in_flight == 0
    with pytest.raises(CommandNotSentError):
        asyncio.run(commands.request(commands.open("node-1", "A1", 10), 10))
    assert commands.in_flight == 0


def test_an_open_that_surely_was_not_sent_is_refused_as_broker_down() -> None:
    publisher = RefusingPublisher()
    commands = Commands(publisher, lambda: NOW)
    fleet = Fleet()
    fleet.apply_status(samples.birth("node-1"), NOW)
    assert fleet.get("node-1") is not None
    stored: list[list[str]] = []
    opens = Opens(
        commands,
        fleet,
        Metrics(lambda: dict.fromkeys(NodeState, 0)),
        stored.append,
        rate_per_min=60,
        burst=5,
        key_rate_per_min=60,
        key_burst=5,
        default_timeout_s=10,
        clock=lambda: NOW,
    )
    compartment = samples.birth("node-1").compartments[0].id
    with pytest.raises(OpenRefusedError) as refused:
        asyncio.run(opens.open("node-1", compartment, requested_by="operator:ann"))
    assert refused.value.refusal is Refusal.BROKER_DOWN
    assert "will not run" in refused.value.detail
    assert publisher.attempts == 1
    assert commands.in_flight == 0
