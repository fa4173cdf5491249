"""Per-partner limits, pure: granted priorities, the hold window, the per-site quota."""

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from controller.reservations.contention import Priority
from controller.reservations.limits import (
    DEFAULT_PRIORITIES,
    Limits,
    arrival_refusal,
    priority_refusal,
    quota_refusal,
    site_quota,
)

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def test_a_key_uses_only_the_priorities_it_was_granted_and_normal_by_default() -> None:
    assert {Priority.NORMAL} == DEFAULT_PRIORITIES
    assert priority_refusal(Priority.NORMAL, DEFAULT_PRIORITIES) is None
    refused = priority_refusal(Priority.PERISHABLE, DEFAULT_PRIORITIES)
    assert refused is not None
    assert "priority 2 (perishable)" in refused and "may use: 0" in refused and "--priorities" in refused
    assert priority_refusal(Priority.PERISHABLE, frozenset({Priority.NORMAL, Priority.PERISHABLE})) is None
    assert priority_refusal(Priority.PEAK_RETURN, frozenset({Priority.NORMAL, Priority.PERISHABLE})) is not None


def test_an_arrival_beyond_the_hold_window_is_refused_naming_the_window_and_when_to_ask_again() -> None:
    lead = Limits().hold_lead_max
    assert lead == timedelta(days=2)
    assert arrival_refusal(NOW + lead, NOW, lead) is None
    assert arrival_refusal(NOW - timedelta(hours=1), NOW, lead) is None  # late couriers still get a compartment
    probe = NOW + timedelta(days=89)  # the probe's hold until March
    refused = arrival_refusal(probe, NOW, lead)
    assert refused is not None
    assert "more than 48 h ahead" in refused and (probe - lead).isoformat() in refused
    assert arrival_refusal(NOW + lead + timedelta(seconds=1), NOW, lead) is not None


def test_the_default_quota_is_half_the_site_and_a_key_may_set_its_own() -> None:
    assert Limits().site_quota_share == 0.5
    assert site_quota(32, 0.5, None) == 16  # the probe's site: 33 requests no longer take all 32
    assert site_quota(7, 0.5, None) == 3
    assert site_quota(1, 0.5, None) == 1  # a one-compartment site is still usable
    assert site_quota(0, 0.5, None) == 1
    assert site_quota(32, 0.5, 40) == 40
    assert site_quota(10, 0.3, None) == 3  # no float rounding down below the share


def test_the_quota_refusal_names_partner_site_and_quota() -> None:
    assert quota_refusal("parcelco", "centre", 15, 16) is None
    refused = quota_refusal("parcelco", "centre", 16, 16)
    assert refused is not None
    assert "parcelco" in refused and "centre" in refused and "quota is 16" in refused


@given(st.integers(0, 500), st.floats(0.01, 1.0), st.lists(st.booleans(), max_size=200))
def test_requests_checked_against_the_quota_never_hold_more_than_it(
    capacity: int, share: float, outcomes: list[bool]
) -> None:
    """Whatever ends (True) or starts (False) in between, the partner's count stays within its quota and its
    share of the site, and it is never locked out while below it."""
    quota = site_quota(capacity, share, None)
    assert quota >= 1 and (quota <= capacity * share + 1e-6 or quota == 1)
    holding = 0
    for ends in outcomes:
        if ends:
            holding = max(0, holding - 1)
            continue
        refused = quota_refusal("p", "s", holding, quota)
        assert (refused is None) == (holding < quota)
        if refused is None:
            holding += 1
        assert holding <= quota
