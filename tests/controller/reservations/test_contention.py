"""The contention policy: exactly as many grants as capacity, smallest fit, eligibility, priorities, waitlist."""

from hypothesis import given
from hypothesis import strategies as st

from controller.reservations.contention import (
    Allocator,
    Compartment,
    NodeCondition,
    Policy,
    Priority,
    Request,
    Site,
    Verdict,
)
from schemas import CompartmentSize as Size

SITES = {
    "centre": Site("centre", 52.5200, 13.4050),
    "north": Site("north", 52.5800, 13.4000),  # ~6.7 km from centre
    "far": Site("far", 48.1351, 11.5820),  # Munich
}
NO_KEEP = Policy(kept_back={})


def node(
    node_id: str,
    site: str = "centre",
    *,
    online: bool = True,
    battery_pct: float = 80.0,
    maintenance: bool = False,
    updating: bool = False,
) -> NodeCondition:
    return NodeCondition(node_id, site, online, battery_pct, maintenance, updating)


def free(node_id: str, compartment: str, size: Size = Size.M, uses: int = 0) -> Compartment:
    return Compartment(node_id, compartment, size, free=True, uses=uses)


@given(st.integers(0, 40), st.integers(0, 80), st.lists(st.sampled_from([Size.S, Size.M]), min_size=80, max_size=80))
def test_a_flash_crowd_gets_exactly_the_capacity_and_no_compartment_twice(
    capacity: int, crowd: int, sizes: list[Size]
) -> None:
    nodes = [node(f"n{i}") for i in range(4)]
    compartments = [free(f"n{i % 4}", f"c{i}") for i in range(capacity)]
    allocator = Allocator(SITES, NO_KEEP)
    decisions = [
        allocator.request(Request(f"r{i}", "centre", sizes[i]), nodes, compartments, 0.0) for i in range(crowd)
    ]
    granted = [(d.node_id, d.compartment_id) for d in decisions if d.verdict is Verdict.GRANTED]
    assert len(granted) == min(crowd, capacity)
    assert len(set(granted)) == len(granted)
    assert all(d.verdict is Verdict.REFUSED for d in decisions[len(granted) :])


def test_the_smallest_size_that_fits_then_the_least_worn() -> None:
    nodes = [node("n1")]
    compartments = [free("n1", "L1", Size.L), free("n1", "M1", Size.M, uses=9), free("n1", "M2", Size.M, uses=2)]
    allocator = Allocator(SITES, NO_KEEP)
    assert allocator.request(Request("r1", "centre", Size.S), nodes, compartments, 0).compartment_id == "M2"
    assert allocator.request(Request("r2", "centre", Size.M), nodes, compartments, 0).compartment_id == "M1"
    assert allocator.request(Request("r3", "centre", Size.M), nodes, compartments, 0).compartment_id == "L1"
    assert allocator.request(Request("r4", "centre", Size.XL), nodes, compartments, 0).verdict is Verdict.REFUSED


def test_only_online_charged_nodes_in_service_are_used() -> None:
    nodes = [
        node("offline", online=False),
        node("flat", battery_pct=10.0),
        node("service", maintenance=True),
        node("updating", updating=True),
        node("good"),
    ]
    compartments = [free(n.node_id, "A1") for n in nodes]
    allocator = Allocator(SITES, NO_KEEP)
    first = allocator.request(Request("r1", "centre", Size.S), nodes, compartments, 0)
    assert first.node_id == "good"
    assert allocator.request(Request("r2", "centre", Size.S), nodes, compartments, 0).verdict is Verdict.REFUSED


def test_higher_priorities_can_take_what_normal_requests_must_leave() -> None:
    nodes = [node("n1")]
    compartments = [free("n1", f"c{i}") for i in range(3)]
    allocator = Allocator(SITES, Policy(kept_back={Priority.NORMAL: 2, Priority.PEAK_RETURN: 1}))
    assert allocator.request(Request("r1", "centre", Size.S), nodes, compartments, 0).verdict is Verdict.GRANTED
    assert allocator.request(Request("r2", "centre", Size.S), nodes, compartments, 0).verdict is Verdict.REFUSED
    peak = Request("r3", "centre", Size.S, Priority.PEAK_RETURN)
    assert allocator.request(peak, nodes, compartments, 0).verdict is Verdict.GRANTED
    perishable = Request("r4", "centre", Size.S, Priority.PERISHABLE)
    assert allocator.request(perishable, nodes, compartments, 0).verdict is Verdict.GRANTED


def test_refusals_name_the_nearest_sites_with_room() -> None:
    nodes = [node("c1"), node("n1", "north"), node("f1", "far")]
    compartments = [free("n1", "A1"), free("f1", "A1")]
    refused = Allocator(SITES, NO_KEEP).request(Request("r1", "centre", Size.S), nodes, compartments, 0)
    assert refused.verdict is Verdict.REFUSED and refused.alternatives == ("north", "far")
    unknown = Allocator(SITES, NO_KEEP).request(Request("r2", "moon", Size.S), nodes, compartments, 0)
    assert unknown.verdict is Verdict.REFUSED and "unknown site" in unknown.reason


def test_waitlist_is_first_come_first_served_within_a_priority_and_expires() -> None:
    nodes = [node("n1")]
    allocator = Allocator(SITES, NO_KEEP)
    full: list[Compartment] = []
    early = allocator.request(Request("early", "centre", Size.S, wait_until=100), nodes, full, 0)
    short = allocator.request(Request("short", "centre", Size.S, wait_until=5), nodes, full, 1)
    late = allocator.request(Request("late", "centre", Size.S, wait_until=100), nodes, full, 2)
    assert [d.verdict for d in (early, short, late)] == [Verdict.WAITLISTED] * 3
    assert [d.position for d in (early, short, late)] == [1, 2, 3]
    room = [free("n1", "A1"), free("n1", "A2")]
    newcomer = allocator.request(Request("newcomer", "centre", Size.S), nodes, room, 3)
    assert newcomer.verdict is Verdict.REFUSED  # may not overtake those waiting
    first = allocator.next_waiting("centre", nodes, room, 10)
    second = allocator.next_waiting("centre", nodes, room, 10)
    assert (first and first.request.request_id, second and second.request.request_id) == ("early", "late")
    assert allocator.next_waiting("centre", nodes, room, 10) is None  # "short" expired, A1/A2 now pending


def test_a_pending_grant_is_not_granted_again_until_the_node_answers() -> None:
    nodes = [node("n1")]
    compartments = [free("n1", "A1")]
    allocator = Allocator(SITES, NO_KEEP)
    assert allocator.request(Request("r1", "centre", Size.S), nodes, compartments, 0).verdict is Verdict.GRANTED
    assert allocator.request(Request("r2", "centre", Size.S), nodes, compartments, 0).verdict is Verdict.REFUSED
    allocator.confirmed("n1", "A1")  # the node refused the hold: its ledger still says free
    assert allocator.request(Request("r3", "centre", Size.S), nodes, compartments, 0).verdict is Verdict.GRANTED
