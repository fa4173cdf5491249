"""The controller's Prometheus metrics, on a registry of their own (served at ``/metrics``)."""

import threading
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from controller.fleet.registry import NodeState

disable_created_metrics()  # type: ignore[no-untyped-call] # the *_created series double every family and no dashboard reads them

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_OPEN_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)
_BATCH_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000)


class _NodesByState(Collector):
    def __init__(self, counts: Callable[[], dict[NodeState, int]]) -> None:
        self._counts = counts

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily("lockerfleet_nodes", "Known nodes by liveness state.", labels=["state"])
        for state, count in self._counts().items():
            family.add_metric([state.value], count)
        yield family


class ThreadCounts(Collector):
    """A counter by one label, counted in plain ints per thread and summed at each scrape.

    For counts taken once per ingested message: ``counts = tc.for_thread(); counts[value] += 1`` costs no lock and
    no Python call (a prometheus-client ``Counter.inc`` takes both, ~0.5 µs). Each thread writes only its own dict,
    so no count is lost between threads; values declared with :meth:`declare` are exported from 0.
    """

    def __init__(self, name: str, documentation: str, label: str, registry: CollectorRegistry) -> None:
        self._name = name
        self._documentation = documentation
        self._label = label
        self._local = threading.local()
        self._lock = threading.Lock()
        self._threads: list[dict[str, int]] = []
        self._declared: dict[str, None] = {}
        registry.register(self)

    def declare(self, values: Iterable[str]) -> None:
        """Export these label values even while their count is 0."""
        with self._lock:
            self._declared.update(dict.fromkeys(str(v) for v in values))

    def for_thread(self) -> dict[str, int]:
        """The calling thread's counts by label value (every declared value present), to increment in place."""
        counts: dict[str, int] | None = getattr(self._local, "counts", None)
        if counts is None:
            with self._lock:
                counts = dict.fromkeys(self._declared, 0)
                self._threads.append(counts)
            self._local.counts = counts
        return counts

    def totals(self) -> dict[str, int]:
        """Counts by label value, summed over threads."""
        with self._lock:
            totals = dict.fromkeys(self._declared, 0)
            threads = list(self._threads)
        for counts in threads:
            for value, count in list(counts.items()):  # one C call: safe while its thread adds a value
                key = str(value)  # a StrEnum member counts under its value
                totals[key] = totals.get(key, 0) + count
        return totals

    def collect(self) -> Iterator[Metric]:
        """The counter family, one sample per label value."""
        family = CounterMetricFamily(self._name, self._documentation, labels=[self._label])
        for value, count in self.totals().items():
            family.add_metric([value], count)
        yield family


class Metrics:
    """Every metric the controller exports; ``node_counts`` is called at each scrape."""

    def __init__(self, node_counts: Callable[[], dict[NodeState, int]]) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.ingested = ThreadCounts(
            "lockerfleet_messages_ingested", "Valid node messages accepted, by kind.", "kind", registry=r
        )
        self.duplicates = ThreadCounts(
            "lockerfleet_messages_duplicate",
            "Redelivered node messages already stored, acknowledged without writing.",
            "kind",
            registry=r,
        )
        self.rejected = Counter(
            "lockerfleet_messages_rejected",
            "Messages refused by the contract, by reason; each is kept in the dead_letter measurement.",
            ["reason"],
            registry=r,
        )
        self.batch_lines = Histogram(
            "lockerfleet_influx_batch_lines", "Lines per InfluxDB write.", buckets=_BATCH_BUCKETS, registry=r
        )
        self.write_seconds = Histogram(
            "lockerfleet_influx_write_seconds",
            "Duration of one successful InfluxDB write, retries included.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.write_retries = Counter(
            "lockerfleet_influx_write_retries", "InfluxDB write attempts that failed and were retried.", registry=r
        )
        self.lines_refused = Counter(
            "lockerfleet_influx_lines_refused",
            "Lines in batches InfluxDB answered 400 to (its log names the bad points).",
            registry=r,
        )
        self.buffer_messages = Gauge(
            "lockerfleet_ingest_buffer_messages",
            "Messages received but not yet stored and acknowledged (capped by the MQTT receive maximum).",
            registry=r,
        )
        self.oldest_unstored = Gauge(
            "lockerfleet_oldest_unstored_age_seconds",
            "Age of the oldest message or point the controller received and InfluxDB has not stored yet (0: none "
            "waits); grows while InfluxDB is unreachable.",
            registry=r,
        )
        self.stored_receipts = Counter(
            "lockerfleet_stored_receipts",
            "Delivery receipts (what the controller stored, per node and boot) by outcome: published, refused (the "
            "command publisher's queue was full; the node re-sends those messages on its next connection).",
            ["outcome"],
            registry=r,
        )
        self.spool_lines = Gauge(
            "lockerfleet_influx_spool_lines",
            "Points of statuses, results and events acknowledged and waiting in the controller's store for InfluxDB.",
            registry=r,
        )
        self.nodes_in_maintenance = Gauge(
            "lockerfleet_nodes_in_maintenance",
            "Nodes an operator took out of the reservation pool.",
            registry=r,
        )
        self.open_rtt = Histogram(
            "lockerfleet_open_round_trip_seconds",
            "Courier open: HTTP request to the node's final answer, by outcome.",
            ["outcome"],
            buckets=_OPEN_BUCKETS,
            registry=r,
        )
        self.opens_limited = Counter(
            "lockerfleet_opens_rate_limited",
            "Opens refused with 429: by one key's open limit (scope=key) or the fleet-wide breaker (scope=fleet).",
            ["scope"],
            registry=r,
        )
        self.opens_throttled_keys = Counter(
            "lockerfleet_open_key_throttled",
            "Opens refused because the requesting key (operator:<name> or partner:<name>) reached its own limit.",
            ["requested_by"],
            registry=r,
        )
        self.reservation_requests = Counter(
            "lockerfleet_reservation_requests",
            "Reservation requests by answer: granted, refused (409), replayed (same Idempotency-Key), invalid.",
            ["answer"],
            registry=r,
        )
        self.reservation_decision_seconds = Histogram(
            "lockerfleet_reservation_decision_seconds",
            "Time to decide one reservation request (lock, allocation, store, command), replays excluded.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=r,
        )
        self.edge_transitions = Counter(
            "lockerfleet_edge_transitions",
            "Ledger changes reported by nodes, by transition and by what caused them (command, code, timer); "
            "deposits and pickups via code were served at the node without a controller round trip.",
            ["transition", "via"],
            registry=r,
        )
        self.rate_limited = Counter(
            "lockerfleet_courier_rate_limited",
            "Courier API requests refused with 429, by limit (key or ip).",
            ["limit"],
            registry=r,
        )
        self.webhooks = Counter(
            "lockerfleet_webhook_attempts",
            "Webhook delivery attempts to courier partners, by result (delivered, retried, given_up).",
            ["result"],
            registry=r,
        )
        r.register(_NodesByState(node_counts))
