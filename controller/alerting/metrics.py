"""The alerts' Prometheus metrics, registered on the controller's registry (served at ``/metrics``)."""

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from schemas.alert import AlertNotice


class _AlertsByState(Collector):
    def __init__(self, counts: Callable[[], dict[tuple[str, str, str], int]]) -> None:
        self._counts = counts

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "lockerfleet_alerts",
            "Alerts kept by the engine, by rule, severity and state (pending, firing; resolved and inactive until "
            "pruned).",
            labels=["rule", "severity", "state"],
        )
        for (rule, severity, state), count in sorted(self._counts().items()):
            family.add_metric([rule, severity, state], count)
        yield family


class AlertMetrics:
    """``lockerfleet_alerts`` (gauge), ``lockerfleet_alert_notifications_total``, the queue and the tick time."""

    def __init__(
        self,
        registry: CollectorRegistry,
        counts: Callable[[], dict[tuple[str, str, str], int]],
        waiting: Callable[[], int],
    ) -> None:
        self.notifications = Counter(
            "lockerfleet_alert_notifications",
            "Alert announcements published, by rule, severity and transition (raised, escalated, acknowledged, "
            "resolved).",
            ["rule", "severity", "transition"],
            registry=registry,
        )
        self.tick_seconds = Histogram(
            "lockerfleet_alert_evaluation_seconds",
            "Duration of one timed evaluation of every rule for every node.",
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=registry,
        )
        queued = Gauge(
            "lockerfleet_alert_inputs_waiting",
            "Ingested messages queued for the alert thread.",
            registry=registry,
        )
        queued.set_function(lambda: float(waiting()))
        registry.register(_AlertsByState(counts))

    def published(self, notice: AlertNotice) -> None:
        """Count one announcement."""
        self.notifications.labels(notice.rule, notice.severity, notice.transition).inc()
