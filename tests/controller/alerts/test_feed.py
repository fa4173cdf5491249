"""Contract messages become the alert rules' inputs: what each message tells the rules, and nothing for the rest."""

from hypothesis import given
from hypothesis import strategies as st

from controller.alerts import (
    AlertMonitor,
    BreakerState,
    DoorEdge,
    DoorOutcome,
    KeypadLockout,
    Liveness,
    NodeInfo,
    TelemetrySample,
    feed,
)
from controller.alerts.feed import apply, inputs_of, telemetry_sample
from schemas import CompartmentReading, DoorState, LockState, NoCause, PowerSource, encode
from schemas.ingest_codec import decode_telemetry
from tests import samples

T0 = samples.T0.timestamp()


def test_telemetry_carries_battery_temperature_outbox_and_compartments() -> None:
    [sample] = inputs_of(samples.telemetry("n1", soc=42.0), 5.0, lambda _n: False)
    assert isinstance(sample, TelemetrySample)
    assert (sample.node_id, sample.ts, sample.received_at, sample.soc_pct) == ("n1", T0, 5.0, 42.0)
    assert (sample.charging, sample.power_source, sample.cycle_count, sample.temp_c) == (False, "battery", 41, 21.25)
    assert [(c.compartment, c.door_open, c.locked) for c in sample.compartments] == [
        ("A1", False, True),
        ("B1", True, False),
    ]


def test_compartment_readings_are_shared_between_samples_until_a_door_or_lock_changes() -> None:
    """Readings are built once per (id, door, lock) set and reused; a change still shows; the cache is bounded."""
    first = telemetry_sample(samples.telemetry("n1", seq=1), 1.0)
    again = telemetry_sample(samples.telemetry("n2", seq=2), 2.0)
    assert again.compartments is first.compartments
    shut = samples.telemetry("n1", seq=3).model_copy(
        update={"compartments": [CompartmentReading(id="B1", door=DoorState.CLOSED, lock=LockState.LOCKED)]}
    )
    assert [(c.compartment, c.door_open, c.locked) for c in telemetry_sample(shut, 3.0).compartments] == [
        ("B1", False, True)
    ]
    for i in range(feed._READINGS_MAX + 10):
        other = shut.model_copy(
            update={"compartments": [CompartmentReading(id=f"C{i}", door=DoorState.OPEN, lock=LockState.LOCKED)]}
        )
        assert telemetry_sample(other, 4.0).compartments[0].compartment == f"C{i}"
    assert len(feed._READINGS) <= feed._READINGS_MAX


def test_door_edges_are_uncommanded_only_when_nothing_caused_an_opening() -> None:
    commanded = samples.door_event("n1")
    assert inputs_of(commanded, 0.0, lambda _n: False) == (DoorEdge("n1", "A1", T0, True, False),)
    intruder = commanded.model_copy(update={"cause": NoCause()})
    assert inputs_of(intruder, 0.0, lambda _n: False) == (DoorEdge("n1", "A1", T0, True, True),)
    closed = intruder.model_copy(update={"action": "closed"})
    assert inputs_of(closed, 0.0, lambda _n: False) == (DoorEdge("n1", "A1", T0, False, False),)


def test_results_with_a_door_outcome_and_keypad_lockouts() -> None:
    assert inputs_of(samples.open_result("n1"), 0.0, lambda _n: False) == (DoorOutcome("n1", "A1", T0, "opened", 180),)
    [lockout] = inputs_of(samples.keypad_event("n1"), 0.0, lambda _n: False)
    assert lockout == KeypadLockout("n1", T0, T0 + 900, 10)
    assert inputs_of(samples.ledger_event("n1"), 0.0, lambda _n: False) == ()


def test_a_birth_registers_site_and_maintenance_and_a_will_says_offline() -> None:
    birth = samples.birth("n1").model_copy(update={"site": "centre"})
    assert inputs_of(birth, 0.0, {"n1"}.__contains__) == (NodeInfo("n1", "centre", True), Liveness("n1", True))
    assert inputs_of(samples.death("n1"), 0.0, lambda _n: False) == (Liveness("n1", False),)


def test_the_open_breaker_state_goes_to_the_fleet_alert() -> None:
    monitor = AlertMonitor()
    [note] = apply(monitor, BreakerState(tripped=True, detail="opens refused", until=T0 + 5), T0)
    assert (note.alert_id, note.transition.value) == ("open_breaker_tripped:*", "raised")
    assert [n.transition.value for n in apply(monitor, BreakerState(tripped=False), T0 + 1)] == ["resolved"]


@given(
    doors=st.lists(st.tuples(st.sampled_from(DoorState), st.sampled_from(LockState)), max_size=6),
    source=st.sampled_from(PowerSource),
    replayed=st.booleans(),
)
def test_an_ingested_frame_gives_the_rules_what_its_model_gives(
    doors: list[tuple[DoorState, LockState]], source: PowerSource, replayed: bool
) -> None:
    """The ingest hands the rules msgspec frames; their view of one must be the model's view of the same message."""
    model = samples.telemetry("n1").model_copy(
        update={
            "compartments": [CompartmentReading(id=f"C{i}", door=d, lock=lock) for i, (d, lock) in enumerate(doors)],
            "battery": samples.telemetry().battery.model_copy(update={"power_source": source}),
            "replayed": replayed,
        }
    )
    frame = decode_telemetry(encode(model))
    assert telemetry_sample(frame, 7.0, "site-1") == telemetry_sample(model, 7.0, "site-1")
    assert inputs_of(frame, 7.0, lambda _n: False) == inputs_of(model, 7.0, lambda _n: False)
