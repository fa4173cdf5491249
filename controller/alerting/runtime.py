"""The alert parts of one controller process, built from its settings and started and stopped with it."""

import logging
from collections.abc import Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry

from controller.alerting.history import battery_history
from controller.alerting.metrics import AlertMetrics
from controller.alerting.publisher import AlertPublisher
from controller.alerting.rules import load_rules
from controller.alerting.service import AlertService
from controller.alerts import BatteryForecast, NodeInfo
from controller.fleet.registry import NodeRecord
from controller.mqtt.publisher import CommandLink
from controller.settings import ControllerSettings
from controller.store.alerts import AlertStore, Notice
from controller.store.reservations import ReservationStore
from schemas.ingest_codec import Ingested

log = logging.getLogger(__name__)


class Alerting:
    """Rules, monitor thread, store, MQTT/InfluxDB publisher and metrics; :meth:`observe` every ingested message."""

    def __init__(
        self,
        settings: ControllerSettings,
        reservation_store: ReservationStore,
        link: CommandLink,
        store_lines: Callable[[list[str]], None],
        registry: CollectorRegistry,
        *,
        clock: Callable[[], float],
        in_maintenance: Callable[[str], bool],
    ) -> None:
        self.subscribers: list[Callable[[list[Notice]], None]] = []
        """Called on the alert thread with each batch of announcements once they are stored (keep them quick)."""
        rules = load_rules(settings.alert_rules_file)
        token = settings.influx_token.get_secret_value() if settings.influx_token else None
        influx_url = str(settings.influx_url).rstrip("/")
        self.store = AlertStore(reservation_store)
        self.service = AlertService.restored(
            rules,
            self.store,
            clock=clock,
            eval_s=settings.alert_eval_s,
            in_maintenance=in_maintenance,
            on_stored=self._stored,
            warm=lambda: battery_history(influx_url, settings.influx_db, token, rules.defaults.battery),
        )
        self.metrics = AlertMetrics(registry, self.service.counts, lambda: self.service.waiting)
        self.service.tick_seconds = self.metrics.tick_seconds.observe
        self.publisher = AlertPublisher(
            self.store,
            link.publish_acknowledged,
            store_lines,
            connected=link.connected.is_set,
            clock=clock,
            on_published=self.metrics.published,
        )

    def register(self, records: Iterable[NodeRecord], maintenance: Mapping[str, object]) -> None:
        """Tell the rules about the nodes known at start (site, maintenance, last seen, online)."""
        self.service.register(
            (NodeInfo(r.node_id, r.birth.site, r.node_id in maintenance, r.last_seen), r.online) for r in records
        )

    def start(self) -> None:
        """Start evaluating and publishing."""
        self.publisher.start()
        self.service.start()

    def stop(self) -> None:
        """Store the state, publish what is stored, stop."""
        self.service.stop()
        self.publisher.stop()

    def observe(self, message: Ingested, now: float) -> None:
        """An ingested message (called on the ingest thread)."""
        self.service.observe(message, now)

    def set_maintenance(self, node_id: str, maintenance: bool) -> None:
        """A node went under maintenance or came back."""
        self.service.set_maintenance(node_id, maintenance)

    def forecast(self, node_id: str) -> BatteryForecast | None:
        """The node's battery forecast now (None: no forecast)."""
        return self.service.forecast(node_id)

    def _stored(self, fresh: list[Notice]) -> None:
        for notice in fresh:
            body = notice.body
            log.log(
                logging.WARNING if body["transition"] in ("raised", "escalated") else logging.INFO,
                "alert %s id=%s episode=%s severity=%s site=%s node=%s summary=%r action=%s",
                body["transition"],
                body["alert_id"],
                body["episode"],
                body["severity"],
                body["site_id"],
                body["node_id"],
                body["summary"],
                "see GET /v1/alerts; acknowledge with POST /v1/alerts/<id>/ack"
                if body["transition"] in ("raised", "escalated")
                else "none",
            )
        self.publisher.wake()
        for subscriber in self.subscribers:
            subscriber(fresh)
