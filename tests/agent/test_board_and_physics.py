"""Board profiles, gpiozero devices on mock pins, and the simulator's physics."""

import random
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from node_agent.board import BoardProfile, default_sim_profile, shipped_profile
from node_agent.hardware import Hardware, HardwareError, W1Thermometer, soc_from_voltage
from node_agent.sim import SimulatedBoard
from node_agent.sim.physics import BatteryModel, ThermalModel
from schemas import PowerSource

SIM = default_sim_profile()


def test_shipped_profiles_load() -> None:
    pi = BoardProfile.from_toml(shipped_profile("pi4-locker-8"))
    assert pi.pin_factory == "default" and pi.battery.kind == "mcp3008" and len(pi.compartments) == 8
    assert SIM.pin_factory == "mock" and SIM.battery.kind == "sim"


@pytest.mark.parametrize(
    ("name", "change", "message"),
    [
        ("sim-locker-8", lambda t: t.replace("door_pin = 5,", "door_pin = 4,"), r"repeated: GPIO4 \(A1 door_pin, A2"),
        ("sim-locker-8", lambda t: t.replace("door_pin = 5,", 'door_pin = "BOARD7",'), "repeated: GPIO4"),  # alias
        ("sim-locker-8", lambda t: t.replace("door_pin = 5,", 'door_pin = "GND",'), "'GND' is not a GPIO pin"),
        ("sim-locker-8", lambda t: t.replace("door_pin = 5,", "door_pin = 40,"), "40 is not a GPIO pin"),
        (
            "pi4-locker-8",
            lambda t: t.replace("door_pin = 5,", "door_pin = 10,"),
            r"GPIO10 \(A1 door_pin, battery SPI\)",
        ),
        ("sim-locker-8", lambda t: t.replace('id = "A2"', 'id = "A1"'), "compartment ids must be unique; repeated: A1"),
        ("sim-locker-8", lambda t: t.replace('kind = "sim"\ncapacity_wh', 'kind = "nuclear"\ncapacity_wh'), "battery"),
        ("sim-locker-8", lambda t: t.replace("pulse_ms = 500", "pulse_ms = 0"), "pulse_ms"),
        ("sim-locker-8", lambda t: t + "\nsurprise = 1\n", "surprise"),
    ],
)
def test_bad_profiles_name_the_file_and_the_problem(
    tmp_path: Path, name: str, change: Callable[[str], str], message: str
) -> None:
    path = tmp_path / "bad.toml"
    text = shipped_profile(name).read_text()
    assert change(text) != text
    path.write_text(change(text))
    with pytest.raises(ValueError, match=message) as info:
        BoardProfile.from_toml(path)
    assert str(path) in str(info.value)


def test_door_edges_call_back_with_compartment_and_state() -> None:
    board = SimulatedBoard(SIM)
    seen: list[tuple[str, bool]] = []
    board.hardware.on_door_change(lambda cid, is_open: seen.append((cid, is_open)))
    door = board.hardware.pin_factory.pin(SIM.compartments[2].door_pin)
    door.drive_high()
    door.drive_low()
    assert seen == [(SIM.compartments[2].id, True), (SIM.compartments[2].id, False)]
    board.hardware.close()


def test_relay_polarity_follows_the_profile() -> None:
    profile = SIM.model_copy(update={"relay_active_high": False})
    factory = MockFactory()
    hardware = Hardware(
        profile,
        pin_factory=factory,
        battery=BatteryModel(100, 1, 1, PowerSource.SHORE, 50),
        temperature=ThermalModel(20, 0, 0, random.Random(1)),
    )
    relay_pin = factory.pin(profile.compartments[0].relay_pin)
    compartment = hardware.compartments[profile.compartments[0].id]
    assert relay_pin.state is True  # active low: idle high
    compartment.relay_on()
    assert relay_pin.state is False and compartment.relay_is_on()
    hardware.close()
    assert relay_pin.state is True


def test_a_sim_profile_without_models_is_refused_before_any_pin_is_claimed() -> None:
    factory = MockFactory()
    with pytest.raises(HardwareError, match="SimulatedBoard"):
        Hardware(SIM, pin_factory=factory, temperature=ThermalModel(20, 0, 0, random.Random(1)))
    assert factory.pins == {}


def test_w1_thermometer_reads_millidegrees_and_explains_failures(tmp_path: Path) -> None:
    from node_agent.board import W1Temperature  # noqa: PLC0415

    sensor = tmp_path / "temperature"
    sensor.write_text("23187\n")
    thermometer = W1Thermometer(W1Temperature(path=sensor))
    assert thermometer.read_c() == pytest.approx(23.187)
    sensor.write_text("garbage")
    with pytest.raises(HardwareError, match="1-wire"):
        thermometer.read_c()


def test_state_of_charge_is_linear_and_clamped() -> None:
    assert soc_from_voltage(12.6, 11.8, 13.4) == pytest.approx(50)
    assert soc_from_voltage(10.0, 11.8, 13.4) == 0
    assert soc_from_voltage(14.0, 11.8, 13.4) == 100


def test_battery_drains_on_battery_charges_on_shore_and_counts_cycles() -> None:
    battery = BatteryModel(capacity_wh=100, load_w=10, charge_w=60, power_source=PowerSource.BATTERY, soc_pct=100)
    battery.step(3600)  # 10 Wh of 100
    assert battery.read().soc_pct == pytest.approx(90)
    assert not battery.read().charging
    battery.set_power_source(PowerSource.SHORE)
    battery.step(360)  # +50 W net for 0.1 h = +5 Wh
    assert battery.read().soc_pct == pytest.approx(95)
    assert battery.read().charging and battery.read().power_source is PowerSource.SHORE
    battery.set_power_source(PowerSource.BATTERY)
    for _ in range(20):  # 200 Wh drawn in total with recharges: cycles counted on discharge
        battery.step(3600)
        if battery.soc_pct < 20:
            battery.soc_pct = 100
    assert battery.read().cycle_count == 2
    low = BatteryModel(100, 10, 0, PowerSource.BATTERY, 1)
    low.step(3600)
    assert low.read().soc_pct == 0 and low.read().voltage_v == pytest.approx(11.8)


def test_temperature_is_warmer_mid_afternoon_than_before_dawn() -> None:
    hour = [3]
    model = ThermalModel(20, 6, 0.5, random.Random(4), clock=lambda: datetime(2026, 7, 1, hour[0], tzinfo=UTC))
    night = [model.read_c() for _ in range(200)]
    hour[0] = 15
    day = [model.read_c() for _ in range(200)]
    assert sum(day) / 200 == pytest.approx(26, abs=0.3)
    assert sum(night) / 200 == pytest.approx(14, abs=0.3)


class FakeSchedule:
    """Records scheduled calls and runs them on demand, in time order."""

    def __init__(self) -> None:
        self.pending: list[tuple[float, Callable[[], None]]] = []

    def __call__(self, delay_s: float, fn: Callable[[], None]) -> None:
        self.pending.append((delay_s, fn))

    def run_next(self) -> float:
        self.pending.sort(key=lambda p: p[0])
        delay, fn = self.pending.pop(0)
        fn()
        return delay


def test_door_opens_after_the_relay_fires_and_closes_after_a_dwell() -> None:
    schedule = FakeSchedule()
    board = SimulatedBoard(SIM, rng=random.Random(3), schedule=schedule, door_dwell_s=20)
    compartment = board.hardware.compartments["A1"]
    assert not compartment.door_is_open()
    compartment.relay_on()
    compartment.relay_off()
    assert len(schedule.pending) == 1
    assert 0.05 <= schedule.run_next() <= 0.3
    assert compartment.door_is_open()
    assert schedule.run_next() > 0  # the dwell
    assert not compartment.door_is_open()
    board.hardware.close()


def test_a_jammed_door_never_moves() -> None:
    schedule = FakeSchedule()
    board = SimulatedBoard(SIM, rng=random.Random(3), schedule=schedule, jam_share=1.0)
    for compartment in board.hardware.compartments.values():
        compartment.relay_on()
        compartment.relay_off()
        assert not compartment.door_is_open()
    assert schedule.pending == []
    board.hardware.close()


def test_500_simulated_boards_share_a_process_each_on_its_own_pins_without_threads() -> None:
    threads = threading.active_count()
    boards = [SimulatedBoard(SIM, rng=random.Random(i)) for i in range(500)]
    assert len({id(b.hardware.pin_factory) for b in boards}) == 500
    assert threading.active_count() == threads  # no per-device threads (gpiozero's Button would start 4,000)
    boards[7].hardware.pin_factory.pin(SIM.compartments[0].door_pin).drive_high()
    assert [b.hardware.compartments["A1"].door_is_open() for b in boards[6:9]] == [False, True, False]
    for board in boards:
        board.hardware.close()
