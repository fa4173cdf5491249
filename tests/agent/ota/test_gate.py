"""The occupancy gate defers an update with the reason, and lets it through only when the locker is idle."""

from datetime import UTC, datetime, timedelta

from node_agent.hardware import BatteryReading
from node_agent.ledger import Ledger, Window
from node_agent.ota.gate import GatePolicy, Occupancy, check_gate
from schemas import PowerSource
from schemas.ota import OtaReason

T0 = datetime(2026, 11, 24, 12, tzinfo=UTC)
POLICY = GatePolicy(lookahead=timedelta(minutes=15), min_battery_pct=40)
FULL = BatteryReading(soc_pct=90, voltage_v=12.8, charging=False, power_source=PowerSource.BATTERY, cycle_count=1)


def idle(**changes: object) -> Occupancy:
    base = {"open_doors": frozenset(), "commands_in_flight": 0, "ledger": Ledger.empty(["A1", "A2"]), "battery": FULL}
    base.update(changes)
    return Occupancy(**base)  # type: ignore[arg-type]


def held(opens_in: timedelta, hold_for: timedelta) -> Ledger:
    window = Window(T0 + opens_in, T0 + opens_in + hold_for, T0 + opens_in + hold_for + timedelta(days=1))
    return Ledger.empty(["A1", "A2"]).reserve("r1", "A1", window, T0).ledger


def test_an_idle_locker_on_a_charged_battery_may_update() -> None:
    assert check_gate(idle(), T0, POLICY) is None


def test_an_open_door_defers() -> None:
    deferral = check_gate(idle(open_doors=frozenset({"A2", "A1"})), T0, POLICY)
    assert deferral is not None and deferral.code == OtaReason.DOOR_OPEN
    assert deferral.detail == "door open: A1, A2"


def test_a_command_in_flight_defers() -> None:
    deferral = check_gate(idle(commands_in_flight=1), T0, POLICY)
    assert deferral is not None and deferral.code == OtaReason.COMMAND_IN_FLIGHT


def test_a_deposit_window_open_or_opening_within_the_lookahead_defers() -> None:
    for opens_in in (timedelta(minutes=-5), timedelta(minutes=10)):
        deferral = check_gate(idle(ledger=held(opens_in, timedelta(hours=1))), T0, POLICY)
        assert deferral is not None and deferral.code == OtaReason.RESERVATION_DUE
        assert "r1" in deferral.detail and "A1" in deferral.detail
    assert check_gate(idle(ledger=held(timedelta(minutes=20), timedelta(hours=1))), T0, POLICY) is None


def test_a_parcel_due_for_pickup_within_the_lookahead_defers_one_due_later_does_not() -> None:
    window = Window(T0 - timedelta(hours=2), T0 + timedelta(minutes=5), T0 + timedelta(minutes=10))
    ledger = Ledger.empty(["A1"]).reserve("r1", "A1", window, T0 - timedelta(hours=1)).ledger.deposit("r1", T0).ledger
    deferral = check_gate(idle(ledger=ledger), T0, POLICY)
    assert deferral is not None and deferral.code == OtaReason.RESERVATION_DUE and "pickup" in deferral.detail
    assert check_gate(idle(ledger=ledger), T0, GatePolicy(lookahead=timedelta(minutes=5))) is None


def test_a_low_battery_defers_unless_on_shore_power() -> None:
    low = BatteryReading(soc_pct=30, voltage_v=11.9, charging=False, power_source=PowerSource.BATTERY, cycle_count=1)
    deferral = check_gate(idle(battery=low), T0, POLICY)
    assert deferral is not None and deferral.code == OtaReason.BATTERY_LOW and "30 %" in deferral.detail
    shore = BatteryReading(soc_pct=30, voltage_v=11.9, charging=True, power_source=PowerSource.SHORE, cycle_count=1)
    assert check_gate(idle(battery=shore), T0, POLICY) is None
    unknown = check_gate(idle(battery=None), T0, POLICY)
    assert unknown is not None and unknown.code == OtaReason.BATTERY_LOW and "cannot be read" in unknown.detail
