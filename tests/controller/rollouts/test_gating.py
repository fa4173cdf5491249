"""Maintenance windows in site-local time and the controller's defer reasons."""

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from controller.rollouts import DeferReason, MaintenanceWindow
from controller.rollouts.gating import controller_defer_reason
from tests.controller.rollouts.fleet import facts


def utc(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 7, 1, hour, minute, tzinfo=UTC)


def test_window_in_local_time() -> None:
    berlin = MaintenanceWindow(daily="02:00-05:00", tz="Europe/Berlin")  # UTC+2 in July
    assert not berlin.contains(utc(23, 59))
    assert berlin.contains(utc(0, 0))
    assert berlin.contains(utc(2, 59))
    assert not berlin.contains(utc(3, 0))


def test_window_across_midnight() -> None:
    night = MaintenanceWindow(daily="22:00-04:00")
    assert [h for h in range(24) if night.contains(utc(h))] == [0, 1, 2, 3, 22, 23]


@pytest.mark.parametrize(
    ("daily", "tz", "message"),
    [
        ("02:00-02:00", "UTC", "same time"),
        ("25:00-03:00", "UTC", "HH:MM"),
        ("2:00-03:00", "UTC", "pattern"),
        ("02:00-03:00", "Mars/Olympus", "IANA"),
    ],
)
def test_bad_windows_are_refused(daily: str, tz: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        MaintenanceWindow(daily=daily, tz=tz)


def test_defer_reasons_in_order_of_precedence() -> None:
    assert controller_defer_reason(None, True) is DeferReason.NOT_IN_FLEET
    assert controller_defer_reason(facts("a", maintenance=True, online=False), True) is DeferReason.MAINTENANCE
    assert controller_defer_reason(facts("a", online=False), True) is DeferReason.OFFLINE
    assert controller_defer_reason(facts("a", updating=True), True) is DeferReason.UPDATING_ELSEWHERE
    assert controller_defer_reason(facts("a"), False) is DeferReason.OUTSIDE_WINDOW
    assert controller_defer_reason(facts("a"), True) is None
