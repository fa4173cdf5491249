"""Work-order book: one order per node and problem, technician actions, closure only on telemetry proof."""

import pytest

from controller.alerts import RuleName
from controller.swapqueue import (
    DEFAULT_RULE_KINDS,
    ActionOrderError,
    AlertNotice,
    CancelReason,
    Event,
    EventKind,
    Evidence,
    NotAssignedError,
    OrderState,
    ProblemKind,
    Severity,
    SwapQueueError,
    TelemetrySample,
    UnknownWorkOrderError,
    VerifyPolicy,
    WorkOrderBook,
    WorkOrderClosedError,
)

HOLD = 600.0
POLICY = VerifyPolicy(soc_jump_pct=30.0, healthy_for_s=HOLD)


def alert(
    alert_id: str = "a1",
    rule: str = "battery_swap",
    node: str = "n1",
    severity: Severity = Severity.WARNING,
    hours: float | None = 5.0,
    at: float = 1000.0,
) -> AlertNotice:
    return AlertNotice(alert_id, rule, node, "s1", severity, hours, at)


def sample(
    ts: float,
    soc: float,
    *,
    cycles: int = 100,
    charging: bool = False,
    online: bool = True,
    pack: str | None = None,
) -> TelemetrySample:
    return TelemetrySample("n1", ts, soc, cycles, charging, online, pack)


def kinds(events: list[Event]) -> list[EventKind]:
    return [e.kind for e in events]


def test_an_alert_opens_one_order_and_a_repeat_refreshes_it() -> None:
    book = WorkOrderBook(POLICY)
    [created] = book.on_alert(alert("a1", hours=5.0, at=1000.0))
    assert created.kind is EventKind.CREATED
    assert created.order.state is OrderState.OPEN and created.order.kind is ProblemKind.BATTERY_SWAP
    [updated] = book.on_alert(alert("a2", severity=Severity.CRITICAL, hours=2.0, at=2000.0))
    assert updated.kind is EventKind.UPDATED
    order = book.get(created.order.order_id)
    assert len(book.open_orders()) == 1
    assert order.alert_ids == ("a1", "a2") and order.occurrences == 2
    assert order.severity is Severity.CRITICAL
    assert order.empty_at == 2000.0 + 2 * 3600
    book.on_alert(alert("a2", severity=Severity.INFO, hours=None, at=2500.0))
    order = book.get(created.order.order_id)
    assert order.occurrences == 2 and order.severity is Severity.CRITICAL and order.hours_to_empty == 2.0


def test_other_problem_kinds_of_the_same_node_get_their_own_order() -> None:
    book = WorkOrderBook(POLICY)
    book.on_alert(alert("a1"))
    book.on_alert(alert("a2", rule="compartment_jammed"))
    book.on_alert(alert("a3", rule="battery_replace"))
    assert sorted(o.kind for o in book.open_orders()) == sorted(ProblemKind)


def test_an_alert_of_a_rule_that_sends_no_technician_opens_no_order() -> None:
    book = WorkOrderBook(POLICY)
    assert book.on_alert(alert("a1", rule="uncommanded_open")) == []
    assert book.orders == {}


def test_every_rule_that_sends_a_technician_is_one_the_alert_engine_emits() -> None:
    assert set(DEFAULT_RULE_KINDS) <= {r.value for r in RuleName}
    assert {DEFAULT_RULE_KINDS[r] for r in ("battery_swap", "battery_replace", "lock_fault")} == set(ProblemKind)


def test_done_alone_never_closes_the_order() -> None:
    book = WorkOrderBook(POLICY)
    order_id = book.on_alert(alert())[0].order.order_id
    assert kinds(book.assign(order_id, "tech-a", 1100.0)) == [EventKind.ASSIGNED]
    assert kinds(book.arrive(order_id, "tech-a", 1200.0)) == [EventKind.ARRIVED]
    assert kinds(book.done(order_id, "tech-a", 1300.0)) == [EventKind.DONE]
    for i in range(20):
        assert book.observe(sample(1400.0 + i * 300, 12.0 - i * 0.1)) == []
    order = book.get(order_id)
    assert order.state is OrderState.AWAITING_VERIFICATION and order.closed_at is None


def test_a_soc_jump_then_a_healthy_hold_verifies_the_swap() -> None:
    book = WorkOrderBook(POLICY)
    order_id = book.on_alert(alert())[0].order.order_id
    book.assign(order_id, "tech-a", 1100.0)
    book.observe(sample(1150.0, 9.0))
    assert kinds(book.observe(sample(1200.0, 96.0))) == [EventKind.FIX_SEEN, EventKind.HEALTH_STARTED]
    assert book.observe(sample(1200.0 + HOLD - 1, 95.0)) == []
    [verified] = book.observe(sample(1200.0 + HOLD, 95.0))
    assert verified.kind is EventKind.VERIFIED
    assert verified.order.state is OrderState.VERIFIED and verified.order.closed_at == 1200.0 + HOLD
    assert verified.order.evidence is Evidence.SOC_JUMP and verified.order.evidence_at == 1200.0
    assert book.open_orders() == []


def test_charging_explains_a_soc_rise() -> None:
    book = WorkOrderBook(POLICY)
    order_id = book.on_alert(alert())[0].order.order_id
    book.observe(sample(1100.0, 10.0, charging=True))
    book.observe(sample(1200.0, 90.0, charging=True))
    book.observe(sample(1300.0, 95.0))
    book.observe(sample(1300.0 + HOLD, 95.0))
    assert book.get(order_id).evidence is None and book.get(order_id).is_open


@pytest.mark.parametrize(
    ("before", "after", "evidence"),
    [((400, None), (3, None), Evidence.CYCLE_RESET), ((100, "P-1"), (100, "P-2"), Evidence.PACK_CHANGED)],
)
def test_a_new_pack_is_proof_for_a_swap_and_a_replacement(
    before: tuple[int, str | None], after: tuple[int, str | None], evidence: Evidence
) -> None:
    book = WorkOrderBook(POLICY)
    swap = book.on_alert(alert("a1"))[0].order.order_id
    worn = book.on_alert(alert("a2", rule="battery_replace"))[0].order.order_id
    book.observe(sample(1100.0, 20.0, cycles=before[0], pack=before[1]))
    book.observe(sample(1200.0, 25.0, cycles=after[0], pack=after[1]))
    book.observe(sample(1200.0 + HOLD, 25.0, cycles=after[0], pack=after[1]))
    for order_id in (swap, worn):
        assert book.get(order_id).state is OrderState.VERIFIED
        assert book.get(order_id).evidence is evidence


def test_a_soc_jump_is_no_proof_that_a_worn_pack_was_replaced() -> None:
    book = WorkOrderBook(POLICY)
    order_id = book.on_alert(alert(rule="battery_replace"))[0].order.order_id
    book.observe(sample(1100.0, 10.0, cycles=900))
    book.observe(sample(1200.0, 95.0, cycles=900))
    book.observe(sample(1200.0 + HOLD, 95.0, cycles=900))
    assert book.get(order_id).evidence is None


def test_going_offline_or_another_critical_alert_restarts_the_healthy_hold() -> None:
    book = WorkOrderBook(POLICY)
    book.on_alert(alert("a1", severity=Severity.CRITICAL))
    order_id = book.open_orders()[0].order_id
    book.observe(sample(1100.0, 5.0))
    book.observe(sample(1200.0, 90.0))
    assert kinds(book.observe(sample(1300.0, 90.0, online=False))) == [EventKind.HEALTH_BROKEN]
    assert kinds(book.observe(sample(1400.0, 90.0))) == [EventKind.HEALTH_STARTED]
    assert kinds(book.on_alert(alert("x1", rule="lock_fault", severity=Severity.CRITICAL, at=1500.0))) == [
        EventKind.CREATED,
        EventKind.HEALTH_BROKEN,
    ]
    book.observe(sample(1400.0 + HOLD, 90.0))
    assert book.get(order_id).state is OrderState.OPEN and book.get(order_id).healthy_since is None
    book.on_alert_resolved("x1", 2050.0)
    assert kinds(book.observe(sample(2100.0, 90.0))) == [EventKind.HEALTH_STARTED]
    assert book.observe(sample(2100.0 + HOLD - 1, 90.0)) == []
    assert kinds(book.observe(sample(2100.0 + HOLD, 90.0))) == [EventKind.VERIFIED]


def test_the_orders_own_critical_alert_does_not_count_against_health() -> None:
    book = WorkOrderBook(POLICY)
    order_id = book.on_alert(alert("a1", severity=Severity.CRITICAL))[0].order.order_id
    book.observe(sample(1100.0, 5.0))
    book.observe(sample(1200.0, 90.0))
    book.observe(sample(1200.0 + HOLD, 90.0))
    assert book.get(order_id).state is OrderState.VERIFIED


def test_an_alert_resolving_before_anyone_arrived_cancels_as_noise() -> None:
    book = WorkOrderBook(POLICY)
    order_id = book.on_alert(alert("a1"))[0].order.order_id
    book.on_alert(alert("a2", at=1100.0))
    book.assign(order_id, "tech-a", 1150.0)
    assert kinds(book.on_alert_resolved("a1", 1200.0)) == [EventKind.UPDATED]
    [cancelled] = book.on_alert_resolved("a2", 1300.0)
    assert cancelled.kind is EventKind.CANCELLED
    assert cancelled.order.cancel_reason is CancelReason.RESOLVED_WITHOUT_ACTION
    assert cancelled.order.closed_at == 1300.0 and not cancelled.order.is_open
    assert book.on_alert_resolved("a2", 1400.0) == []


def test_a_battery_alert_resolving_after_arrival_still_waits_for_proof() -> None:
    book = WorkOrderBook(POLICY)
    order_id = book.on_alert(alert("a1"))[0].order.order_id
    book.assign(order_id, "tech-a", 1100.0)
    book.arrive(order_id, "tech-a", 1200.0)
    assert kinds(book.on_alert_resolved("a1", 1300.0)) == [EventKind.UPDATED]
    book.observe(sample(1400.0, 50.0))
    book.observe(sample(1400.0 + HOLD, 50.0))
    assert book.get(order_id).state is OrderState.ARRIVED


def test_a_field_repair_is_proven_by_its_alert_resolving_after_arrival_and_a_healthy_hold() -> None:
    book = WorkOrderBook(POLICY)
    order_id = book.on_alert(alert("j1", rule="compartment_jammed"))[0].order.order_id
    book.assign(order_id, "tech-a", 1100.0)
    book.arrive(order_id, "tech-a", 1200.0)
    book.observe(sample(1250.0, 50.0))
    assert kinds(book.on_alert_resolved("j1", 1300.0)) == [EventKind.FIX_SEEN]
    assert kinds(book.observe(sample(1400.0, 50.0))) == [EventKind.HEALTH_STARTED]
    assert kinds(book.on_alert(alert("j2", rule="compartment_jammed", at=1500.0))) == [EventKind.UPDATED]
    assert book.get(order_id).evidence is None
    book.observe(sample(1400.0 + HOLD, 50.0))
    assert book.get(order_id).state is OrderState.ARRIVED


def test_technician_actions_are_checked() -> None:
    book = WorkOrderBook(POLICY)
    order_id = book.on_alert(alert())[0].order.order_id
    with pytest.raises(NotAssignedError, match="nobody"):
        book.arrive(order_id, "tech-a", 1100.0)
    book.assign(order_id, "tech-a", 1100.0)
    assert book.assign(order_id, "tech-a", 1150.0) == []
    with pytest.raises(NotAssignedError, match="tech-b"):
        book.done(order_id, "tech-b", 1200.0)
    book.arrive(order_id, "tech-a", 1200.0)
    assert book.arrive(order_id, "tech-a", 1250.0) == []
    with pytest.raises(ActionOrderError, match="reassigned"):
        book.assign(order_id, "tech-b", 1300.0)
    book.done(order_id, "tech-a", 1300.0)
    assert book.done(order_id, "tech-a", 1350.0) == []
    book.cancel(order_id, 1400.0)
    assert book.get(order_id).cancel_reason is CancelReason.OPERATOR
    with pytest.raises(WorkOrderClosedError, match="cancelled"):
        book.done(order_id, "tech-a", 1500.0)
    with pytest.raises(UnknownWorkOrderError, match="wo-nope"):
        book.get("wo-nope")


def test_a_new_episode_after_closure_is_a_new_order_with_a_new_id() -> None:
    book = WorkOrderBook(POLICY)
    first = book.on_alert(alert("a1"))[0].order.order_id
    book.on_alert_resolved("a1", 1100.0)
    second = book.on_alert(alert("a1", at=2000.0))[0].order.order_id
    assert first != second
    assert book.get(first).state is OrderState.CANCELLED and book.get(second).state is OrderState.OPEN


def test_samples_arriving_late_are_ignored() -> None:
    book = WorkOrderBook(POLICY)
    order_id = book.on_alert(alert())[0].order.order_id
    book.observe(sample(1300.0, 10.0))
    assert book.observe(sample(1200.0, 99.0)) == []
    assert book.get(order_id).evidence is None


def test_a_book_resumed_from_stored_orders_and_last_samples_carries_on() -> None:
    book = WorkOrderBook(POLICY)
    order_id = book.on_alert(alert("a1"))[0].order.order_id
    book.on_alert(alert("c1", rule="uncommanded_open", severity=Severity.CRITICAL))
    book.observe(sample(1100.0, 5.0))
    resumed = WorkOrderBook(
        POLICY,
        orders=book.orders.values(),
        last_samples=[sample(1100.0, 5.0)],
        critical_alerts=[alert("c1", rule="uncommanded_open", severity=Severity.CRITICAL)],
    )
    resumed.observe(sample(1200.0, 90.0))
    resumed.observe(sample(1200.0 + HOLD, 90.0))
    assert resumed.get(order_id).evidence is Evidence.SOC_JUMP
    assert resumed.get(order_id).state is OrderState.OPEN
    resumed.on_alert_resolved("c1", 2000.0)
    resumed.observe(sample(2100.0, 90.0))
    resumed.observe(sample(2100.0 + HOLD, 90.0))
    assert resumed.get(order_id).state is OrderState.VERIFIED
    assert len(resumed.on_alert(alert("a9", at=3000.0))) == 1
    assert len(resumed.open_orders()) == 1


@pytest.mark.parametrize(("jump", "hold", "named"), [(0.0, 60.0, "soc_jump_pct"), (30.0, -1.0, "healthy_for_s")])
def test_a_bad_policy_is_refused_with_the_setting_named(jump: float, hold: float, named: str) -> None:
    with pytest.raises(SwapQueueError, match=named):
        VerifyPolicy(soc_jump_pct=jump, healthy_for_s=hold)
