"""Work-order book under random interleavings of alerts, technician taps and telemetry (Hypothesis state machine).

Invariants: an order closes as verified only from telemetry, only with proof found independently in the samples it
was fed, and only after a healthy hold; never two open orders per (node, kind); the orders rebuilt from the events
alone equal the book's (what the store keeps is complete); a book restarted from them at any step answers every
later input exactly as a twin that never restarted.
"""

from collections import defaultdict
from collections.abc import Callable
from itertools import pairwise

import hypothesis
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from controller.swapqueue import (
    AlertNotice,
    Event,
    EventKind,
    Evidence,
    OrderState,
    ProblemKind,
    Severity,
    SwapQueueError,
    TelemetrySample,
    VerifyPolicy,
    WorkOrder,
    WorkOrderBook,
)

HOLD = 600.0
POLICY = VerifyPolicy(soc_jump_pct=30.0, healthy_for_s=HOLD)
NODES = ("n1", "n2")
RULES = ("battery_swap", "battery_replace", "compartment_jammed", "uncommanded_open")
TECHS = ("tech-a", "tech-b")
dts = st.sampled_from([0.0, 30.0, 200.0, 400.0, 700.0])


def swapped(order: WorkOrder, prev: TelemetrySample, cur: TelemetrySample) -> bool:
    """Independent statement of the proof of a new pack between two consecutive samples."""
    if prev.pack_id and cur.pack_id and prev.pack_id != cur.pack_id:
        return True
    if cur.cycle_count < prev.cycle_count:
        return True
    jump = cur.soc_pct - prev.soc_pct >= 30.0 and not prev.charging and not cur.charging
    return order.kind is ProblemKind.BATTERY_SWAP and jump


class BookMachine(RuleBasedStateMachine):
    """Drives one book and keeps what a store would keep: the orders carried by events."""

    @initialize()
    def start(self) -> None:
        self.book = WorkOrderBook(POLICY)
        self.twin = WorkOrderBook(POLICY)
        """Fed the same inputs, never restarted."""
        self.now = 1000.0
        self.stored: dict[str, WorkOrder] = {}
        self.alert_ids: list[str] = []
        self.critical: dict[str, AlertNotice] = {}
        self.samples: dict[str, list[TelemetrySample]] = defaultdict(list)

    def _both(self, call: Callable[[WorkOrderBook], list[Event]], *, telemetry: bool) -> None:
        """Feed the book and its never-restarted twin; both must answer alike. Store what the book's events carry."""
        outcomes: list[object] = []
        for book in (self.book, self.twin):
            try:
                outcomes.append(call(book))
            except SwapQueueError as e:
                outcomes.append(type(e))
        assert outcomes[0] == outcomes[1], "a restarted book answers differently"
        if isinstance(outcomes[0], list):
            self._store(outcomes[0], telemetry=telemetry)

    def _store(self, events: list[Event], *, telemetry: bool) -> None:
        for event in events:
            assert telemetry or event.kind is not EventKind.VERIFIED, "closed without telemetry"
            hypothesis.event(f"order {event.kind}")
            self.stored[event.order.order_id] = event.order

    @rule(dt=dts, node=st.sampled_from(NODES), rule=st.sampled_from(RULES), severity=st.sampled_from(list(Severity)))
    def alert(self, dt: float, node: str, rule: str, severity: Severity) -> None:
        self.now += dt
        notice = AlertNotice(f"a{len(self.alert_ids)}", rule, node, "s1", severity, 4.0, self.now)
        self.alert_ids.append(notice.alert_id)
        if severity is Severity.CRITICAL:
            self.critical[notice.alert_id] = notice
        self._both(lambda b: b.on_alert(notice), telemetry=False)

    @precondition(lambda self: bool(self.alert_ids))
    @rule(dt=dts, data=st.data())
    def resolve(self, dt: float, data: st.DataObject) -> None:
        self.now += dt
        alert_id = data.draw(st.sampled_from(self.alert_ids))
        self.critical.pop(alert_id, None)
        self._both(lambda b: b.on_alert_resolved(alert_id, self.now), telemetry=False)

    @precondition(lambda self: bool(self.stored))
    @rule(
        dt=dts,
        data=st.data(),
        action=st.sampled_from(["assign", "arrive", "done", "cancel"]),
        tech=st.sampled_from(TECHS),
    )
    def technician(self, dt: float, data: st.DataObject, action: str, tech: str) -> None:
        self.now += dt
        order_id = data.draw(st.sampled_from(sorted(self.stored)))
        now = self.now
        if action == "cancel":
            self._both(lambda b: b.cancel(order_id, now), telemetry=False)
        else:
            self._both(lambda b: getattr(b, action)(order_id, tech, now), telemetry=False)

    @rule(
        dt=dts,
        node=st.sampled_from(NODES),
        soc=st.sampled_from([5.0, 40.0, 95.0]),
        cycles=st.sampled_from([10, 300]),
        charging=st.booleans(),
        online=st.sampled_from([True, True, True, False]),
        pack=st.sampled_from([None, "P1", "P2"]),
    )
    def telemetry(
        self, dt: float, node: str, soc: float, cycles: int, charging: bool, online: bool, pack: str | None
    ) -> None:
        self.now += dt
        sample = TelemetrySample(node, self.now, soc, cycles, charging, online, pack)
        seen = self.samples[node]
        if not seen or sample.ts > seen[-1].ts:
            seen.append(sample)
        self._both(lambda b: b.observe(sample), telemetry=True)

    @rule()
    def restart(self) -> None:
        """The controller restarts: a new book from the stored orders, last samples and critical alerts firing."""
        last = [s[-1] for s in self.samples.values() if s]
        self.book = WorkOrderBook(POLICY, self.stored.values(), last, self.critical.values())

    @invariant()
    def stored_orders_are_the_books(self) -> None:
        assert self.stored == dict(self.book.orders)

    @invariant()
    def one_open_order_per_node_and_kind(self) -> None:
        keys = [(o.node_id, o.kind) for o in self.book.orders.values() if o.is_open]
        assert len(keys) == len(set(keys))
        assert sorted(o.order_id for o in self.book.open_orders()) == sorted(
            o.order_id for o in self.book.orders.values() if o.is_open
        )

    @invariant()
    def verified_only_with_proof_and_a_healthy_hold(self) -> None:
        for order in self.book.orders.values():
            if order.state is not OrderState.VERIFIED:
                continue
            assert order.evidence is not None and order.evidence_at is not None
            assert order.healthy_since is not None and order.closed_at is not None
            assert order.closed_at - order.healthy_since >= HOLD
            assert order.evidence_at <= order.healthy_since
            closing = [s for s in self.samples[order.node_id] if s.ts == order.closed_at]
            assert closing and closing[0].online
            if order.evidence is Evidence.ALERT_RESOLVED:
                assert order.kind is ProblemKind.FIELD_REPAIR
                assert order.arrived_at is not None or order.done_at is not None
            else:
                pairs = pairwise(self.samples[order.node_id])
                assert any(order.created_at <= c.ts == order.evidence_at and swapped(order, p, c) for p, c in pairs), (
                    f"no new pack in the samples behind {order.order_id}"
                )

    @invariant()
    def cancelled_as_noise_only_before_anyone_arrived(self) -> None:
        for order in self.book.orders.values():
            if order.state is OrderState.CANCELLED and order.arrived_at is not None:
                assert order.cancel_reason == "operator"

    @invariant()
    def the_restarted_book_matches_its_twin(self) -> None:
        assert self.book.orders == self.twin.orders
        assert self.book.open_orders() == self.twin.open_orders()


BookMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
TestWorkOrderBook = BookMachine.TestCase
