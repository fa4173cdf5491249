"""Offline codes at the keypad: right compartment once, nothing outside the window, wrong codes throttled per scope
with a lock that grows while they go on (issue 14, finding 7: a lock of the whole locker for 15 minutes, repeatably)."""

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


def wrong_codes_of_another_scope(right: str, count: int) -> list[str]:
    """``count`` different wrong codes, all of one scope that is not ``right``'s."""
    digit = "1" if right[0] != "1" else "2"
    return [f"{digit}{i:07d}" for i in range(count)]


def test_wrong_codes_lock_only_their_scope_and_the_right_code_of_another_scope_still_opens() -> None:
    pad = keypad()
    right = code_of(PICKUP)
    wrong = wrong_codes_of_another_scope(right, 10)
    results = [pad.enter(code, [PICKUP], T0 + timedelta(seconds=i)) for i, code in enumerate(wrong)]
    assert [r.locked_now for r in results[:5]] == [False] * 4 + [True]
    assert results[4].locked_until == T0 + timedelta(seconds=4 + 30) and results[4].wrong_attempts == 5
    assert results[4].scope == wrong[0][0]
    assert all(r.refused is KeypadRefusal.LOCKED for r in results[5:])  # the scope waits
    assert pad.enter(right, [PICKUP], T0 + timedelta(seconds=11)).grant == PICKUP  # other codes keep working


def test_a_right_code_of_a_locked_scope_waits_for_the_lock_to_end() -> None:
    pad = keypad()
    right = code_of(PICKUP)
    same_scope = [f"{right[0]}{i:07d}" for i in range(5) if f"{right[0]}{i:07d}" != right]
    locked = [pad.enter(code, [PICKUP], T0) for code in same_scope[:5]][-1]
    assert locked.locked_now and locked.locked_until == T0 + timedelta(seconds=30)
    assert pad.enter(right, [PICKUP], T0 + timedelta(seconds=29)).refused is KeypadRefusal.LOCKED
    assert pad.enter(right, [PICKUP], T0 + timedelta(seconds=30)).grant == PICKUP


def test_each_further_wrong_code_of_a_scope_locks_it_twice_as_long_up_to_15_minutes() -> None:
    pad = keypad()
    at = T0
    for code in wrong_codes_of_another_scope(code_of(PICKUP), 5):
        result = pad.enter(code, [PICKUP], at)
    lockouts = [result.locked_until - at if result.locked_until else None]
    for _ in range(7):
        at = result.locked_until or at  # the moment the lock ends, one more wrong code
        result = pad.enter("19999999", [PICKUP], at)
        assert result.locked_now and result.wrong_attempts == 1
        lockouts.append(result.locked_until - at if result.locked_until else None)
    assert lockouts == [timedelta(seconds=s) for s in (30, 60, 120, 240, 480, 900, 900, 900)]


def test_a_quiet_hour_after_a_lock_forgives_the_scope() -> None:
    pad = keypad()
    for code in wrong_codes_of_another_scope(code_of(PICKUP), 5):
        last = pad.enter(code, [PICKUP], T0)
    assert last.locked_until == T0 + timedelta(seconds=30)
    later = T0 + timedelta(seconds=30) + timedelta(hours=1, seconds=1)
    assert not pad.enter("19999999", [PICKUP], later).locked_now  # counts from zero again: four more before a lock
    assert pad.snapshot().scopes[0][1].level == 0


def test_wrong_codes_spread_over_more_than_15_minutes_do_not_lock() -> None:
    pad = keypad()
    results = [pad.enter("12345678", [PICKUP], T0 + timedelta(minutes=4 * i)) for i in range(12)]
    assert not any(r.locked_now for r in results)


def test_guessing_one_scope_as_fast_as_the_locks_allow_gets_about_four_tries_an_hour() -> None:
    pad = keypad()
    at, tries, end = T0, 0, T0 + timedelta(days=1)
    while at < end:
        result = pad.enter(f"1{tries:07d}", [PICKUP], at)
        if result.refused is KeypadRefusal.LOCKED:
            assert result.locked_until is not None
            at = result.locked_until
            continue
        tries += 1
        at += timedelta(seconds=1)
    assert tries <= 5 + 6 + 24 * 4  # the free five, the ramp up to 15 minutes, then one per lock


@given(
    st.lists(
        st.tuples(st.sampled_from("0123456789"), st.integers(0, 3600)),
        max_size=60,
    )
)
def test_typing_never_locks_a_scope_nobody_typed_in_and_locks_never_exceed_15_minutes(
    typed: list[tuple[str, int]],
) -> None:
    pad = keypad()
    right = code_of(PICKUP)
    at = T0
    for digit, gap_s in typed:
        if digit == right[0]:
            continue
        at += timedelta(seconds=gap_s)
        result = pad.enter(f"{digit}{gap_s:07d}", [PICKUP], at)
        if result.locked_now:
            assert result.locked_until is not None and result.locked_until - at <= timedelta(minutes=15)
    assert pad.enter(right, [PICKUP], at).grant == PICKUP


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
