"""The fleet open breaker: opens refused at the fleet-wide limit tell the alerts it tripped, and until when."""

import asyncio

import pytest

from controller.alerts import BreakerState
from controller.commands.opens import OpenRefusedError, Opens, Refusal
from controller.commands.service import CommandNotSentError, Commands
from controller.fleet.registry import Fleet, NodeState
from controller.metrics import Metrics
from tests import samples

NOW = samples.T0.timestamp()


class RefusingPublisher:
    """A publisher whose queue is full: each open spends its tokens, then answers broker_down at once."""

    def publish(self, topic: str, payload: bytes, expiry_s: float) -> None:
        raise CommandNotSentError(f"queue full; {topic} refused")


def refusal(opens: Opens, requested_by: str = "operator:ann") -> Refusal:
    with pytest.raises(OpenRefusedError) as refused:
        asyncio.run(opens.open("node-1", "A1", requested_by=requested_by))
    return refused.value.refusal


def test_opens_refused_at_the_fleet_limit_trip_the_breaker_until_the_limit_is_full_again() -> None:
    fleet = Fleet()
    fleet.apply_status(samples.birth("node-1"), NOW)
    states: list[BreakerState] = []
    opens = Opens(
        Commands(RefusingPublisher(), lambda: NOW),
        fleet,
        Metrics(lambda: dict.fromkeys(NodeState, 0)),
        lambda _lines: None,
        rate_per_min=60,
        burst=2,
        key_rate_per_min=6000,
        key_burst=100,
        default_timeout_s=10,
        clock=lambda: NOW,
        on_breaker=states.append,
    )
    assert [refusal(opens) for _ in range(2)] == [Refusal.BROKER_DOWN] * 2  # within the burst: no trip
    assert states == []
    assert [refusal(opens) for _ in range(3)] == [Refusal.RATE_LIMITED] * 3
    [tripped] = states  # told once, not once per refused open
    assert tripped.tripped and tripped.detail == "opens refused at the fleet-wide limit of 60/min"
    assert tripped.until == pytest.approx(NOW + 2.0, abs=0.1)  # two tokens at one a second: full again in 2 s


def test_a_key_over_its_own_limit_does_not_trip_the_fleet_breaker() -> None:
    fleet = Fleet()
    fleet.apply_status(samples.birth("node-1"), NOW)
    states: list[BreakerState] = []
    opens = Opens(
        Commands(RefusingPublisher(), lambda: NOW),
        fleet,
        Metrics(lambda: dict.fromkeys(NodeState, 0)),
        lambda _lines: None,
        rate_per_min=600,
        burst=50,
        key_rate_per_min=60,
        key_burst=1,
        default_timeout_s=10,
        clock=lambda: NOW,
        on_breaker=states.append,
    )
    assert [refusal(opens) for _ in range(3)] == [Refusal.BROKER_DOWN] + [Refusal.RATE_LIMITED] * 2
    assert states == []
