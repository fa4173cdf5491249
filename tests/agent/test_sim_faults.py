"""Simulator faults: how they are written, what each does to a simulated board, and clearing them."""

import random
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from node_agent.board import default_sim_profile
from node_agent.settings import SimSettings
from node_agent.sim import SimulatedBoard
from node_agent.sim.faults import (
    ClockSkew,
    DoorHeld,
    Drain,
    FaultSpecError,
    Heater,
    Intruder,
    Latch,
    LockFault,
    Offline,
    OutboxDrop,
    Pack,
    Stale,
    Swap,
    Uplink,
    Wear,
    fault_plan,
    load_faults_file,
    parse_fault,
    parse_faults,
)
from node_agent.sim.fleet import SimFleet
from node_agent.sim.injector import NodeFaults
from schemas import PowerSource

SIM = default_sim_profile()
COMPARTMENTS = [c.id for c in SIM.compartments]


@pytest.mark.parametrize(
    ("spec", "fault"),
    [
        ("drain:fast", Drain(10.0)),
        ("drain:slow", Drain(100.0)),
        ("drain:0.2", Drain(0.2)),
        ("pack:fade", Pack("fade", 50.0)),
        ("pack:drop:10", Pack("drop", 10.0)),
        ("pack:worn", Pack("worn", 1900.0)),
        ("heater", Heater(offset_c=40.0)),
        ("heater:-30", Heater(offset_c=-30.0)),
        ("heater:drift", Heater(drift_c_per_h=2.0)),
        ("heater:drift:-5", Heater(drift_c_per_h=-5.0)),
        ("latch", Latch(None)),
        ("latch:A2", Latch("A2")),
        ("wear", Wear(None, 50.0)),
        ("wear:A1:300", Wear("A1", 300.0)),
        ("wear:80", Wear(None, 80.0)),
        ("intruder", Intruder(None)),
        ("intruder:600", Intruder(600.0)),
        ("swap", Swap(0.0)),
        (" swap:60 ", Swap(60.0)),
        ("door:held", DoorHeld(None)),
        ("door:held:A2", DoorHeld("A2")),
        ("lock:fault:B1", LockFault("B1")),
        ("offline", Offline()),
        ("uplink", Uplink()),
        ("stale", Stale()),
        ("outbox:drop", OutboxDrop(10.0)),
        ("outbox:drop:3", OutboxDrop(3.0)),
        ("clock:skew", ClockSkew(600.0)),
        ("clock:skew:-120", ClockSkew(-120.0)),
    ],
)
def test_faults_are_read_from_their_written_form(spec: str, fault: object) -> None:
    assert parse_fault(spec) == fault


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("bogus", "unknown kind 'bogus'; one of drain, pack, heater, latch, wear, intruder, swap"),
        ("drain", "drain:fast, drain:slow or drain:<hours from full to empty>"),
        ("drain:-1", "'-1' must be above 0"),
        ("drain:nan", "'nan' must be above 0"),
        ("pack:melt", "pack:fade, pack:drop or pack:worn"),
        ("pack:drop:120", "'120' must be above 0, at most 100"),
        ("heater:hot", "'hot' is not a number"),
        ("latch:A1:B1", r"latch\[:compartment\]"),
        ("wear:A1:B1", r"wear\[:compartment\]\[:ms_per_open\]"),
        ("wear::5", "an empty argument"),
        ("intruder:0", "'0' must be above 0"),
        ("swap:-1", "'-1' must be at least 0"),
        ("door:open", r"door:held\[:compartment\]"),
        ("lock", r"lock:fault\[:compartment\]"),
        ("offline:5", "offline takes no argument"),
        ("outbox:drop:0", "'0' must be above 0"),
        ("clock:skew:soon", "'soon' is not a number"),
    ],
)
def test_a_badly_written_fault_is_refused_naming_it(spec: str, message: str) -> None:
    with pytest.raises(FaultSpecError, match=message) as info:
        parse_fault(spec)
    assert repr(spec) in str(info.value) or "unknown kind" in str(info.value)


def test_per_node_faults_from_the_flag_and_a_file(tmp_path: Path) -> None:
    assert parse_faults("sim-0003=drain:fast, sim-0007=heater,sim-0003=swap:60,@north=uplink") == {
        "sim-0003": (Drain(10.0), Swap(60.0)),
        "sim-0007": (Heater(40.0),),
        "@north": (Uplink(),),
    }
    with pytest.raises(FaultSpecError, match="'sim-0003' is not node=fault"):
        parse_faults("sim-0003")
    path = tmp_path / "faults.toml"
    path.write_text('[faults]\nsim-0001 = ["drain:fast", "swap:600"]\n"sim-0002" = ["latch:A2"]\n')
    assert load_faults_file(path) == {"sim-0001": (Drain(10.0), Swap(600.0)), "sim-0002": (Latch("A2"),)}
    assert fault_plan("sim-0001=heater", path)["sim-0001"] == (Drain(10.0), Swap(600.0), Heater(40.0))
    path.write_text('[faults]\nsim-0001 = ["drain:x"]\n')
    with pytest.raises(FaultSpecError, match=r"faults\.sim-0001: fault 'drain:x'"):
        load_faults_file(path)
    path.write_text('[faults]\nsim-0001 = "heater"\n')
    with pytest.raises(FaultSpecError, match="must be a list of strings"):
        load_faults_file(path)


def test_the_simulator_refuses_bad_faults_at_start_naming_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="fault 'heater:hot'"):
        SimSettings(faults="sim-0001=heater:hot")
    bad = tmp_path / "faults.toml"
    bad.write_text("[faults\n")
    with pytest.raises(ValidationError, match="faults file"):
        SimSettings(faults_file=bad)


class Clock:
    """A schedule the test runs by hand: ``advance`` fires what is due."""

    def __init__(self) -> None:
        self.now = 0.0
        self.due: list[tuple[float, Callable[[], None]]] = []

    def schedule(self, delay_s: float, fn: Callable[[], None]) -> None:
        self.due.append((self.now + delay_s, fn))

    def advance(self, seconds: float) -> None:
        self.now += seconds
        while ready := sorted((t, i) for i, (t, _) in enumerate(self.due) if t <= self.now):
            _, index = ready[0]
            self.due.pop(index)[1]()


def node(clock: Clock, power: PowerSource = PowerSource.SHORE) -> tuple[SimulatedBoard, NodeFaults]:
    board = SimulatedBoard(SIM, rng=random.Random(1), schedule=clock.schedule, door_dwell_s=1.0, power_source=power)
    faults = NodeFaults("sim-0001", COMPARTMENTS, SIM.door_timeout_ms / 1000, random.Random(2), lambda: None)
    faults.attach(board)
    return board, faults


def test_a_drain_puts_the_node_on_battery_with_its_load_until_cleared() -> None:
    board, faults = node(Clock())
    faults.apply(Drain(0.5))
    board.step(60)
    assert board.battery.read().power_source is PowerSource.BATTERY
    assert board.battery.soc_pct == pytest.approx(80 - 100 * 60 / 1800)  # a full pack in half an hour
    faults.clear("drain")
    assert (board.battery.power_source, board.battery.load_w) == (PowerSource.SHORE, 6.0)
    assert faults.active == []


def test_failing_packs_fade_drop_and_wear_and_a_swap_replaces_them() -> None:
    board, faults = node(Clock(), PowerSource.BATTERY)
    for fault in (Pack("fade", 50.0), Pack("drop", 15.0), Pack("worn", 1900.0)):
        faults.apply(fault)
    battery = board.battery
    assert (battery.capacity_wh, battery.soc_pct, battery.read().cycle_count) == (300.0, 15.0, 1900)
    faults.apply(Drain(100.0))
    faults.swap_pack()
    reading = battery.read()
    assert (battery.capacity_wh, reading.soc_pct, reading.cycle_count) == (600.0, 100.0, 0)
    assert faults.active == [Drain(100.0)]  # the load stays: it is the node's, not the pack's


def test_clearing_a_pack_fault_is_a_swap() -> None:
    board, faults = node(Clock())
    faults.apply(Pack("drop", 12.0))
    faults.clear("pack")
    assert board.battery.soc_pct == 100.0 and faults.active == []


def test_a_swap_waits_its_delay() -> None:
    board, faults = node(Clock())
    faults.apply(Pack("worn", 2500.0))
    faults.apply(Swap(30.0))
    for _ in range(29):
        faults.step(1.0)
    assert board.battery.cycle_count == 2500
    faults.step(1.0)
    assert board.battery.cycle_count == 0 and faults.active == []


def test_a_heater_fault_offsets_or_drifts_the_enclosure_until_cleared() -> None:
    board, faults = node(Clock())
    baseline = board.thermal.read_c()
    faults.apply(Heater(offset_c=40.0))
    assert board.thermal.offset_c == 40.0 and board.thermal.read_c() > baseline + 35
    faults.clear("heater")
    faults.apply(Heater(drift_c_per_h=3600.0))
    for _ in range(10):
        faults.step(1.0)
    assert board.thermal.offset_c == pytest.approx(10.0)
    faults.clear()
    assert board.thermal.offset_c == 0.0


def test_a_sticky_latch_keeps_its_door_shut_until_cleared() -> None:
    clock = Clock()
    board, faults = node(clock)
    faults.apply(Latch("A2"))
    board.hardware.compartments["A2"].relay_on()
    clock.advance(1.0)
    assert not board.doors["A2"].is_open
    board.hardware.compartments["A2"].relay_off()
    faults.clear("latch")
    board.hardware.compartments["A2"].relay_on()
    clock.advance(1.0)
    assert board.doors["A2"].is_open


def opening_delay(clock: Clock, board: SimulatedBoard, compartment: str) -> float:
    """Seconds from the relay firing to the switch opening; the door closes again after."""
    lock = board.hardware.compartments[compartment]
    lock.relay_on()
    started = clock.now
    while not board.doors[compartment].is_open:
        clock.advance(0.01)
    delay = clock.now - started
    lock.relay_off()
    clock.advance(60.0)
    assert not board.doors[compartment].is_open
    return delay


def test_a_wearing_switch_is_reached_later_at_each_opening_up_to_a_cap() -> None:
    clock = Clock()
    board, faults = node(clock)
    faults.apply(Wear("A1", 400.0))
    delays = [opening_delay(clock, board, "A1") for _ in range(8)]
    assert delays[3] > delays[0] + 1.0 and max(delays) <= 0.3 + 0.7 * 3.0 + 0.02
    assert opening_delay(clock, board, "B1") < 0.32  # only A1 wears
    faults.clear("wear")
    assert opening_delay(clock, board, "A1") < 0.32


def test_an_intruder_forces_a_door_with_no_relay() -> None:
    clock = Clock()
    board, faults = node(clock)
    faults.apply(Intruder(every_s=100.0))
    faults.step(1.0)
    assert len([d for d in board.doors.values() if d.is_open]) == 1
    assert not any(c.relay.value for c in board.hardware.compartments.values())
    clock.advance(60.0)
    faults.step(50.0)
    assert not any(d.is_open for d in board.doors.values())  # not yet back
    faults.step(50.0)
    assert len([d for d in board.doors.values() if d.is_open]) == 1
    clock.advance(60.0)
    faults.clear("intruder")
    faults.step(200.0)
    assert not any(d.is_open for d in board.doors.values())


def test_faults_survive_a_new_board_and_unknown_compartments_are_refused() -> None:
    clock = Clock()
    _, faults = node(clock)
    faults.apply(Heater(offset_c=-30.0))
    faults.apply(Latch(None))
    fresh = SimulatedBoard(SIM, rng=random.Random(3), schedule=clock.schedule)
    faults.attach(fresh)  # an in-process restart after an update
    assert fresh.thermal.offset_c == -30.0 and fresh.doors["A1"].jammed
    with pytest.raises(FaultSpecError, match="no such compartment"):
        faults.apply(Latch("Z9"))


def test_a_held_door_stays_open_once_opened_until_cleared() -> None:
    clock = Clock()
    board, faults = node(clock)
    faults.apply(DoorHeld("A2"))
    board.hardware.compartments["A2"].relay_on()
    clock.advance(60.0)
    assert board.doors["A2"].is_open
    board.hardware.compartments["A2"].relay_off()
    assert opening_delay(clock, board, "A1") < 0.32  # only A2 is held
    faults.clear("door")
    assert not board.doors["A2"].is_open and faults.active == []


def test_a_welded_lock_relay_reads_unlocked_with_its_door_shut_until_replaced() -> None:
    clock = Clock()
    board, faults = node(clock)
    lock = board.hardware.compartments["A1"]  # the default: the profile's first
    faults.apply(LockFault(None))
    clock.advance(60.0)
    assert lock.relay_is_on() and not board.doors["A1"].is_open
    lock.relay_off()  # the agent's release does nothing to welded contacts
    assert lock.relay_is_on()
    faults.clear("lock")
    assert not lock.relay_is_on() and not board.doors["A1"].is_open
    assert opening_delay(clock, board, "A1") < 0.32  # a working relay again


class FakeLink:
    def __init__(self) -> None:
        self.down = False

    def cut(self) -> None:
        self.down = True

    def mend(self) -> None:
        self.down = False


def with_agent() -> tuple[SimpleNamespace, NodeFaults]:
    """A node whose agent is a stand-in holding what the faults change: link, telemetry, outbox, settings."""
    agent = SimpleNamespace(
        link=FakeLink(),
        telemetry_paused=False,
        outbox=SimpleNamespace(capacity=500),
        settings=SimpleNamespace(outbox_capacity=500),
    )
    faults = NodeFaults("sim-0001", COMPARTMENTS, 3.0, random.Random(2), lambda: agent)  # type: ignore[arg-type,return-value]
    faults.attach(SimulatedBoard(SIM, rng=random.Random(1), schedule=Clock().schedule))
    return agent, faults


def test_offline_and_uplink_cut_the_link_until_both_are_cleared() -> None:
    agent, faults = with_agent()
    faults.apply(Offline())
    faults.apply(Uplink())
    assert agent.link.down
    faults.clear("uplink")
    faults.step(1.0)
    assert agent.link.down  # still offline
    faults.clear("offline")
    assert not agent.link.down


def test_a_stale_node_stays_connected_without_telemetry() -> None:
    agent, faults = with_agent()
    faults.apply(Stale())
    assert agent.telemetry_paused and not agent.link.down
    faults.clear("stale")
    assert not agent.telemetry_paused


def test_an_outbox_drop_is_a_one_message_outbox_through_an_outage_of_its_length() -> None:
    agent, faults = with_agent()
    faults.apply(OutboxDrop(3.0))
    assert agent.link.down and agent.outbox.capacity == 1
    faults.step(1.0)
    faults.step(1.0)
    assert agent.link.down
    faults.step(1.0)
    assert not agent.link.down and agent.outbox.capacity == 1  # back; the outbox stays small until cleared
    faults.clear("outbox")
    assert agent.outbox.capacity == 500


def test_a_skewed_clock_runs_off_by_its_offset_until_cleared() -> None:
    _, faults = with_agent()
    faults.apply(ClockSkew(-120.0))
    assert (datetime.now(UTC) - faults.now()).total_seconds() == pytest.approx(120.0, abs=1.0)
    faults.clear("clock")
    assert abs((datetime.now(UTC) - faults.now()).total_seconds()) < 1.0


def test_a_site_target_gives_every_node_at_the_site_its_fault(tmp_path: Path) -> None:
    settings = SimSettings(nodes=4, sites=["north", "south"], data_dir=tmp_path, faults="@south=uplink,sim-0000=stale")
    fleet = SimFleet(settings, Clock().schedule)
    try:
        assert {n: f.active for n, f in fleet.faults.items()} == {
            "sim-0000": [Stale()],
            "sim-0001": [Uplink()],
            "sim-0002": [],
            "sim-0003": [Uplink()],
        }
        fleet.inject("@north", "clock:skew:60")
        assert [bool(f.active and f.active[-1] == ClockSkew(60.0)) for f in fleet.faults.values()] == [
            True,
            False,
            True,
            False,
        ]
        assert fleet.agents[0].telemetry_paused and not fleet.agents[2].telemetry_paused
        fleet.clear_faults("@south", "uplink")
        assert fleet.faults["sim-0001"].active == fleet.faults["sim-0003"].active == []
        with pytest.raises(KeyError, match="no node at '@east'"):
            fleet.inject("@east", "uplink")
    finally:
        fleet.close()
