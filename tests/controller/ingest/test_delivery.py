"""A delivery whose handling fails is never acknowledged: the store being down is retried, a bug comes back a few
times and is then kept as a dead letter."""

from typing import cast

import pytest
import sqlalchemy as sa

from controller.ingest.dedup import MessageKey
from controller.ingest.delivery import ATTEMPTS, DeliveryHandler, store_unreachable
from controller.ingest.handler import Handled, Ingest
from controller.mqtt.ingest_protocol import SessionError

Submitted = tuple[list[str], int | None, MessageKey | None]


class FakeIngest:
    """Fails with the errors it is given, one per call, then handles."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    def handle(self, topic: str, payload: bytes) -> Handled:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return Handled([f"line {payload.decode()}"], MessageKey("node-1", 1, self.calls))

    def failed(self, topic: str, payload: bytes, error: Exception) -> Handled:
        return Handled([f"dead_letter {type(error).__name__}"])


def db_down() -> sa.exc.OperationalError:
    return sa.exc.OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))


def handler(ingest: FakeIngest, submitted: list[Submitted], retry_for_s: float = 5.0) -> DeliveryHandler[int]:
    return DeliveryHandler(
        cast(Ingest, ingest), lambda *a: submitted.append(a), session="control", retry_for_s=retry_for_s
    )


def test_a_handled_message_is_submitted_with_its_token() -> None:
    submitted: list[Submitted] = []
    handler(FakeIngest(), submitted)("t", b"1", 7)
    assert submitted == [(["line 1"], 7, MessageKey("node-1", 1, 1))]


def test_the_store_down_for_a_moment_is_retried_in_place() -> None:
    submitted: list[Submitted] = []
    ingest = FakeIngest(db_down(), db_down())
    handler(ingest, submitted)("t", b"1", 7)
    assert ingest.calls == 3 and submitted == [(["line 1"], 7, MessageKey("node-1", 1, 3))]


def test_the_store_down_for_long_ends_the_connection_with_nothing_acknowledged() -> None:
    submitted: list[Submitted] = []
    ingest = FakeIngest(*[db_down() for _ in range(100)])
    with pytest.raises(SessionError) as raised:
        handler(ingest, submitted, retry_for_s=0.5)("t", b"1", 7)
    assert raised.value.reason == "store_unavailable"
    assert submitted == []  # the broker keeps it and delivers it again after the reconnect


def test_a_bug_comes_back_then_is_kept_as_a_dead_letter_and_acknowledged() -> None:
    submitted: list[Submitted] = []
    ingest = FakeIngest(*[KeyError("bug") for _ in range(ATTEMPTS)])
    deliver = handler(ingest, submitted)
    for _ in range(ATTEMPTS - 1):
        with pytest.raises(SessionError) as raised:
            deliver("t", b"1", 7)
        assert raised.value.reason == "handler_failed" and submitted == []
    deliver("t", b"1", 7)
    assert submitted == [(["dead_letter KeyError"], 7, None)]
    deliver("t", b"2", 8)  # the next message is handled as usual
    assert submitted[-1] == (["line 2"], 8, MessageKey("node-1", 1, ATTEMPTS + 1))


def test_which_errors_mean_the_store_is_unreachable() -> None:
    assert store_unreachable(db_down())
    assert store_unreachable(sa.exc.TimeoutError("pool exhausted"))
    assert store_unreachable(ConnectionResetError())
    assert not store_unreachable(sa.exc.IntegrityError("INSERT", {}, ValueError("duplicate")))
    assert not store_unreachable(KeyError("bug"))
