"""Offline codes at the keypad: right compartment once, nothing outside the window, lockout after 10 wrong codes."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node_agent.keypad import Grant, Keypad, KeypadRefusal
from schemas.codes import CODE_DIGITS, CodePurpose, node_key, offline_code

SECRET = b"controller secret for tests only"
T0 = datetime(2026, 11, 24, 12, tzinfo=UTC)
PICKUP = Grant(CodePurpose.PICKUP, "B1", "res-7", T0, T0 + timedelta(days=2))
DEPOSIT = Grant(CodePurpose.DEPOSIT, "A1", "res-8", T0, T0 + timedelta(hours=1))


def code_of(grant: Grant, node_id: str = "node-1") -> str:
    key = node_key(SECRET, node_id)
    return offline_code(
        key, grant.purpose, node_id, grant.compartment, grant.reservation_id, grant.not_before, grant.not_after
    )


def keypad(node_id: str = "node-1") -> Keypad:
    return Keypad(node_key(SECRET, node_id), node_id)


def test_a_pickup_code_opens_its_compartment_once() -> None:
    pad = keypad()
    first = pad.enter(code_of(PICKUP), [DEPOSIT, PICKUP], T0 + timedelta(hours=3))
    assert first.grant == PICKUP
    again = pad.enter(code_of(PICKUP), [DEPOSIT, PICKUP], T0 + timedelta(hours=4))
    assert again.grant is None and again.refused is KeypadRefusal.USED


def test_codes_outside_their_window_or_for_another_grant_are_refused() -> None:
    pad = keypad()
    late = T0 + timedelta(days=2, minutes=3)  # past the window and the 2-minute skew
    assert pad.enter(code_of(PICKUP), [PICKUP], late).refused is KeypadRefusal.WRONG
    early_within_skew = T0 - timedelta(minutes=1)
    assert pad.enter(code_of(DEPOSIT), [DEPOSIT], early_within_skew).grant == DEPOSIT
    other_compartment = Grant(CodePurpose.PICKUP, "C1", "res-7", PICKUP.not_before, PICKUP.not_after)
    assert pad.enter(code_of(PICKUP), [other_compartment], T0).refused is KeypadRefusal.WRONG


def test_a_code_from_another_node_opens_nothing_here() -> None:
    assert keypad("node-1").enter(code_of(PICKUP, node_id="node-2"), [PICKUP], T0).refused is KeypadRefusal.WRONG
    assert node_key(SECRET, "node-1") != node_key(SECRET, "node-2")


def test_ten_wrong_codes_in_15_minutes_lock_the_keypad() -> None:
    pad = keypad()
    results = [pad.enter("00000000", [PICKUP], T0 + timedelta(minutes=i)) for i in range(10)]
    assert [r.locked_now for r in results] == [False] * 9 + [True]
    assert results[-1].locked_until == T0 + timedelta(minutes=9 + 15)
    locked = pad.enter(code_of(PICKUP), [PICKUP], T0 + timedelta(minutes=20))
    assert locked.refused is KeypadRefusal.LOCKED and locked.grant is None  # even the right code waits
    assert pad.enter(code_of(PICKUP), [PICKUP], T0 + timedelta(minutes=25)).grant == PICKUP


def test_wrong_codes_spread_over_more_than_15_minutes_do_not_lock() -> None:
    pad = keypad()
    results = [pad.enter("12345678", [PICKUP], T0 + timedelta(minutes=2 * i)) for i in range(12)]
    assert not any(r.locked_now for r in results)


@given(st.text(min_size=1, max_size=20), st.text(min_size=1, max_size=20), st.integers(1, 10**6))
def test_codes_have_eight_digits_and_are_reproducible(compartment: str, reservation: str, seconds: int) -> None:
    key = node_key(SECRET, "node-1")
    end = T0 + timedelta(seconds=seconds)
    code = offline_code(key, CodePurpose.PICKUP, "node-1", compartment, reservation, T0, end)
    assert len(code) == CODE_DIGITS and code.isdigit()
    assert code == offline_code(key, CodePurpose.PICKUP, "node-1", compartment, reservation, T0, end)


def test_an_empty_window_is_refused() -> None:
    with pytest.raises(ValueError, match="window"):
        offline_code(b"k", CodePurpose.DEPOSIT, "n", "A1", "r", T0, T0)
