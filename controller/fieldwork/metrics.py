"""The swap queue's Prometheus metrics, on the controller's registry (served at ``/metrics``)."""

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from controller.swapqueue import Event, EventKind, OrderState, ProblemKind

_SWAPS = frozenset({ProblemKind.BATTERY_SWAP, ProblemKind.PACK_REPLACEMENT})


class _OpenOrders(Collector):
    def __init__(self, counts: Callable[[], dict[str, int]]) -> None:
        self._counts = counts

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "lockerfleet_work_orders_open",
            "Work orders not yet verified or cancelled, by state (open, assigned, arrived, awaiting_verification).",
            labels=["state"],
        )
        for state, count in sorted(self._counts().items()):
            family.add_metric([state], count)
        yield family


class FieldMetrics:
    """``lockerfleet_work_orders_open`` (gauge by state), ``lockerfleet_work_order_events_total`` and
    ``lockerfleet_swap_seconds`` (first alert to verified swap: its ``_sum / _count`` is the mean time to swap)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry
        self.events = Counter(
            "lockerfleet_work_order_events",
            "Changes of work orders, by event (created, assigned, arrived, done, fix_seen, verified, cancelled, ...).",
            ["event"],
            registry=registry,
        )
        self.time_to_swap = Histogram(
            "lockerfleet_swap_seconds",
            "First alert to verified swap (battery swap or pack replacement); mean time to swap = _sum / _count.",
            buckets=(600, 1800, 3600, 2 * 3600, 4 * 3600, 8 * 3600, 12 * 3600, 24 * 3600, 48 * 3600, 96 * 3600),
            registry=registry,
        )

    def watch(self, counts: Callable[[], dict[str, int]]) -> None:
        """Report open orders by state from ``counts`` at every scrape."""
        self._registry.register(_OpenOrders(counts))

    def event(self, e: Event) -> None:
        """Count one stored event."""
        self.events.labels(e.kind.value).inc()
        order = e.order
        if e.kind is EventKind.VERIFIED and order.kind in _SWAPS and order.state is OrderState.VERIFIED:
            self.time_to_swap.observe(max(0.0, e.at - order.created_at))
