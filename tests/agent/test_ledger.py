"""The edge ledger: never double-books, never opens without a live reservation, whatever the order of requests."""

from datetime import UTC, datetime, timedelta

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from node_agent.ledger import Ledger, Refusal, SlotState, Window
from schemas import LedgerTransition

T0 = datetime(2026, 11, 24, 12, tzinfo=UTC)
COMPARTMENTS = ["A1", "A2", "B1"]


def window(hold: timedelta, start: datetime = T0, pickup: timedelta = timedelta(days=2)) -> Window:
    """Codes valid from ``start``, deposit within ``hold``, pickup within ``pickup`` after that."""
    return Window(start - timedelta(seconds=1), start + hold, start + hold + pickup)


reservations = st.sampled_from(["r1", "r2", "r3", "r4", "r5"])
compartments = st.sampled_from([*COMPARTMENTS, "Z9"])


def test_a_hold_then_deposit_then_pickup_frees_the_compartment() -> None:
    ledger = Ledger.empty(COMPARTMENTS)
    held = ledger.reserve("r1", "A1", window(timedelta(minutes=30)), T0)
    assert held.accepted and [c.transition for c in held.changes] == [LedgerTransition.HELD]
    taken = held.ledger.reserve("r2", "A1", window(timedelta(minutes=30)), T0)
    assert taken.refused is Refusal.NOT_FREE and "A1 is held" in taken.detail
    deposited = held.ledger.deposit("r1", T0 + timedelta(minutes=5))
    assert deposited.ledger.slots["A1"].state is SlotState.OCCUPIED
    assert deposited.ledger.cancel("r1").refused is Refusal.WRONG_STATE
    assert deposited.ledger.deposit("r1", T0 + timedelta(minutes=6)).refused is Refusal.WRONG_STATE  # never twice
    picked = deposited.ledger.pickup("r1")
    assert picked.ledger.slots["A1"].state is SlotState.FREE


def test_a_hold_not_deposited_in_time_frees_itself_and_cannot_be_deposited() -> None:
    held = Ledger.empty(COMPARTMENTS).reserve("r1", "A1", window(timedelta(minutes=30)), T0).ledger
    late = T0 + timedelta(minutes=30)
    assert held.deposit("r1", late).refused is Refusal.HOLD_EXPIRED
    expired = held.expire(late)
    assert [(c.transition, c.reservation_id) for c in expired.changes] == [(LedgerTransition.HOLD_EXPIRED, "r1")]
    assert expired.ledger.slots["A1"].state is SlotState.FREE
    assert expired.ledger.expire(late).changes == ()


def test_out_of_service_only_from_free() -> None:
    held = Ledger.empty(COMPARTMENTS).reserve("r1", "A1", window(timedelta(hours=1)), T0).ledger
    assert held.set_out_of_service("A1", out=True).refused is Refusal.NOT_FREE
    out = held.set_out_of_service("A2", out=True).ledger
    assert out.reserve("r2", "A2", window(timedelta(hours=1)), T0).refused is Refusal.OUT_OF_SERVICE
    assert out.set_out_of_service("A2", out=False).ledger.slots["A2"].state is SlotState.FREE


class LedgerMachine(RuleBasedStateMachine):
    """Random reserve / cancel / deposit / pickup / expire / repeats, checked against a plain model."""

    def __init__(self) -> None:
        super().__init__()
        self.ledger = Ledger.empty(COMPARTMENTS)
        self.now = T0
        self.model: dict[str, tuple[str, SlotState, datetime]] = {}  # reservation → (compartment, state, deadline)
        self.out: set[str] = set()

    def _holder(self, compartment: str) -> str | None:
        return next((r for r, (c, _s, _d) in self.model.items() if c == compartment), None)

    @rule(reservation=reservations, compartment=compartments, ttl_s=st.integers(-5, 600))
    def reserve(self, reservation: str, compartment: str, ttl_s: int) -> None:
        until = self.now + timedelta(seconds=ttl_s)
        decision = self.ledger.reserve(reservation, compartment, window(timedelta(seconds=ttl_s), self.now), self.now)
        placed = self.model.get(reservation)
        expected_ok = (
            compartment in COMPARTMENTS
            and ttl_s > 0
            and (
                (placed is not None and placed[0] == compartment)
                or (placed is None and compartment not in self.out and self._holder(compartment) is None)
            )
        )
        assert decision.accepted == expected_ok, (decision, self.model)
        if expected_ok and placed is None:
            self.model[reservation] = (compartment, SlotState.HELD, until)
        self.ledger = decision.ledger

    @rule(reservation=reservations)
    def cancel(self, reservation: str) -> None:
        decision = self.ledger.cancel(reservation)
        placed = self.model.get(reservation)
        assert decision.accepted == (placed is not None and placed[1] is SlotState.HELD)
        if decision.accepted:
            del self.model[reservation]
        self.ledger = decision.ledger

    @rule(reservation=reservations)
    def deposit(self, reservation: str) -> None:
        decision = self.ledger.deposit(reservation, self.now)
        placed = self.model.get(reservation)
        live_hold = placed is not None and placed[1] is SlotState.HELD and placed[2] > self.now
        assert decision.accepted == live_hold  # never opens for a dead or missing hold, nor twice for one parcel
        if placed is not None and placed[1] is SlotState.OCCUPIED:
            assert decision.refused is Refusal.WRONG_STATE
        if live_hold:
            assert placed is not None
            self.model[reservation] = (placed[0], SlotState.OCCUPIED, placed[2])
        self.ledger = decision.ledger

    @rule(reservation=reservations)
    def pickup(self, reservation: str) -> None:
        decision = self.ledger.pickup(reservation)
        placed = self.model.get(reservation)
        assert decision.accepted == (placed is not None and placed[1] is SlotState.OCCUPIED)
        if decision.accepted:
            del self.model[reservation]
        self.ledger = decision.ledger

    @rule(seconds=st.integers(0, 900))
    def time_passes(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)
        decision = self.ledger.expire(self.now)
        gone = {r for r, (_c, s, d) in self.model.items() if s is SlotState.HELD and d <= self.now}
        assert {c.reservation_id for c in decision.changes} == gone
        for reservation in gone:
            del self.model[reservation]
        self.ledger = decision.ledger

    @rule(compartment=st.sampled_from(COMPARTMENTS), out=st.booleans())
    def service(self, compartment: str, out: bool) -> None:
        decision = self.ledger.set_out_of_service(compartment, out)
        if out and self._holder(compartment) is not None:
            assert decision.refused is Refusal.NOT_FREE
        elif out:
            self.out.add(compartment)
        else:
            self.out.discard(compartment)
        self.ledger = decision.ledger

    @invariant()
    def matches_the_model_and_never_double_books(self) -> None:
        seen: dict[str, str] = {}
        for compartment, slot in self.ledger.slots.items():
            if slot.reservation_id is not None:
                assert slot.reservation_id not in seen, "a reservation in two compartments"
                seen[slot.reservation_id] = compartment
                assert slot.state in (SlotState.HELD, SlotState.OCCUPIED)
            expected = SlotState.OUT_OF_SERVICE if compartment in self.out else SlotState.FREE
            holder = self._holder(compartment)
            if holder is not None:
                expected = self.model[holder][1]
            assert slot.state is expected, (compartment, slot, self.model)
        assert seen == {r: c for r, (c, _s, _d) in self.model.items()}


TestLedgerMachine = LedgerMachine.TestCase
