"""The controller process's parts wired together: MQTT in, fleet state, InfluxDB out, courier opens."""

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from controller.alerting.runtime import Alerting
from controller.commands.opens import Opens
from controller.commands.service import Commands
from controller.commands.signing import command_signing_key
from controller.fieldwork.metrics import FieldMetrics
from controller.fieldwork.service import FieldService
from controller.fleet.registry import Fleet, NodeState
from controller.influx.lineproto import fleet_line, maintenance_line
from controller.influx.writer import InfluxWriter
from controller.ingest.dedup import MessageKey, SeenWindow
from controller.ingest.delivery import DeliveryHandler
from controller.ingest.handler import Ingest
from controller.ingest.health import Health, assess
from controller.ingest.pipeline import WritePipeline
from controller.ingest.receipts import Receipts
from controller.ingest.spool import ControlSpool
from controller.kpis.job import InfluxRows, KpiJob
from controller.metrics import Metrics
from controller.mqtt.ingest_session import (
    CONTROL_CHANNELS,
    CONTROL_SUFFIX,
    DATA_CHANNELS,
    AckToken,
    IngestLink,
    LinkSettings,
)
from controller.mqtt.publisher import CommandLink
from controller.mqtt.receipts import ReceiptFlusher
from controller.mqtt.session_metrics import SessionMetrics
from controller.notify.webhooks import WebhookSender
from controller.reservations.limits import Limits
from controller.reservations.service import Reservations, sites_from
from controller.rollouts.runner import RolloutRunner
from controller.settings import ControllerSettings, reservations_sqlite_url
from controller.store.fieldwork import FieldStore, TechnicianKey
from controller.store.fleet import FleetStore, adopt_sqlite_registry
from controller.store.operators import Maintenance, OperatorKey, OperatorStore
from controller.store.reservations import ApiKey, ReservationStore
from controller.store.rollouts import RolloutStore
from controller.store.spool import SpoolStore
from controller.swapqueue import GeoPoint, VerifyPolicy
from controller.swapqueue.ortools_sequencer import sequence
from schemas import StatusBirth
from schemas.broker import redact_url
from schemas.codes import node_key
from schemas.ingest_codec import Ingested

log = logging.getLogger(__name__)

STOP_FLUSH_S = 2.0
"""At stop, time to store and acknowledge what is buffered (SIGTERM ends the process within 5 s; the rest waits on
the broker, unacknowledged, for the next start)."""
SPOOL_STOP_S = 1.0
"""At stop, time to spool and acknowledge the control messages handed over (what InfluxDB has not stored yet stays in
the spool for the next start)."""


class Controller:
    """One controller process: call :meth:`start`, serve, then :meth:`stop`."""

    def __init__(self, settings: ControllerSettings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock
        self.reservation_store = ReservationStore(
            settings.reservations_url or reservations_sqlite_url(settings.store_path)
        )
        self.store = FleetStore(self.reservation_store.engine)  # shared by every controller on that database
        adopt_sqlite_registry(settings.store_path, self.store)
        self.fleet = Fleet(self.store.load())
        self.metrics = Metrics(lambda: self.fleet.counts(self.clock()))
        token = settings.influx_token.get_secret_value() if settings.influx_token else None
        self.writer = InfluxWriter(
            str(settings.influx_url).rstrip("/"),
            settings.influx_db,
            token,
            on_retry=lambda _e: self.metrics.write_retries.inc(),
        )
        session_metrics = SessionMetrics(self.metrics.registry)
        self.link = IngestLink(  # telemetry: acknowledged once InfluxDB stored it
            LinkSettings(
                url=str(settings.mqtt_url),
                broker_files=settings.broker_files(),
                client_id=settings.client_id,
                share_group=settings.share_group,
                channels=DATA_CHANNELS,
                receive_maximum=settings.receive_maximum,
                session_expiry_s=settings.session_expiry_s,
            ),
            self._on_message,
            metrics=session_metrics,
        )
        self.control_link = IngestLink(  # statuses, results, events: acknowledged once acted on and spooled
            LinkSettings(
                url=str(settings.mqtt_url),
                broker_files=settings.broker_files(),
                client_id=f"{settings.client_id}{CONTROL_SUFFIX}",
                username_suffix=CONTROL_SUFFIX,
                share_group=settings.share_group,
                channels=CONTROL_CHANNELS,
                receive_maximum=settings.control_receive_maximum,
                session_expiry_s=settings.session_expiry_s,
            ),
            self._on_control,
            metrics=session_metrics,
        )
        self.command_link = CommandLink(
            str(settings.mqtt_url), f"{settings.client_id}-commands", settings.broker_files()
        )
        self._code_secret = self.reservation_store.code_secret()
        self.commands = Commands(self.command_link, clock, signer=command_signing_key(self._code_secret))
        self.receipts = Receipts()
        """Keys of the messages stored (or done with) since the last delivery receipts were published."""
        self.receipt_flusher = (
            ReceiptFlusher(self.receipts, self.command_link, settings.stored_receipt_s, self.metrics.stored_receipts)
            if settings.stored_receipt_s
            else None
        )
        self.pipeline: WritePipeline[AckToken] = WritePipeline(
            self.writer,
            SeenWindow(),
            self.metrics,
            self.link.ack,
            max_lines=settings.batch_max_lines,
            max_age_s=settings.batch_max_age_s,
            on_stored=self._stored,
        )
        self.spool: ControlSpool[AckToken] = ControlSpool(
            SpoolStore(self.reservation_store.engine),
            self.writer,
            self.metrics,
            self.control_link.ack,
            self._spooled,
        )
        sites = json.loads(settings.sites_file.read_text()) if settings.sites_file else []
        self.operators = OperatorStore(self.reservation_store.engine)
        if not self.operators.has_keys():
            log.warning(
                "no operator key in the store url=%s action=issue one with `lockerfleet operator-key --operator <you>` "
                "(same --store-path or --reservations-url); /v1/nodes answers 401 until then",
                self.reservation_store.engine.url.render_as_string(hide_password=True),
            )
        self.maintenance: dict[str, Maintenance] = self.operators.maintenance()
        """Nodes an operator keeps out of the reservation pool (read on every decision, so kept in memory)."""
        self.metrics.nodes_in_maintenance.set_function(lambda: len(self.maintenance))
        self.webhooks = WebhookSender(
            self.reservation_store,
            self.metrics,
            clock=clock,
            allow_private=settings.webhook_allow_private,
            complete=lambda event: self.reservations.event_with_codes(event),  # noqa: PLW0108 - built below
        )
        self.alerts = Alerting(
            settings,
            self.reservation_store,
            self.command_link,
            self.pipeline.submit,
            self.metrics.registry,
            clock=clock,
            in_maintenance=self.maintenance.__contains__,
        )
        self.alerts.register(self.fleet.records(), self.maintenance)
        self.field_store = FieldStore(self.reservation_store.engine)
        self.field = FieldService(
            self.field_store,
            policy=VerifyPolicy(soc_jump_pct=settings.field_soc_jump_pct, healthy_for_s=settings.field_healthy_for_s),
            sites={s.site_id: GeoPoint(s.lat, s.lon) for s in sites_from(sites).values()},
            sequencer=sequence,
            metrics=FieldMetrics(self.metrics.registry),
            clock=clock,
            firing=self.alerts.service.records,
            forecast=self.alerts.forecast,
            active_reservations=self.reservation_store.active,
            store_lines=self.pipeline.submit,
        )
        self.alerts.subscribers.append(self.field.on_notices)
        self.rollouts = RolloutRunner(
            RolloutStore(self.reservation_store.engine),
            self.commands,
            self.fleet,
            maintenance=self.maintenance,
            releases_dir=settings.releases_dir,
            public_url=settings.artifact_base_url(),
            store_lines=self.pipeline.submit,
            clock=clock,
            tick_s=settings.rollout_tick_s,
        )
        self.reservations = Reservations(
            self.reservation_store,
            self.fleet,
            sites_from(sites),
            self.commands,
            metrics=self.metrics,
            secret=self._code_secret,
            store_lines=self.pipeline.submit,
            clock=clock,
            limits=Limits(timedelta(hours=settings.hold_lead_max_h), settings.site_quota_share),
            maintenance=self.maintenance,
            updating=self.rollouts.updating,
        )
        self.opens = Opens(
            self.commands,
            self.fleet,
            self.metrics,
            self.pipeline.submit,
            rate_per_min=settings.open_rate_per_min,
            burst=settings.open_burst,
            key_rate_per_min=settings.open_rate_per_key_per_min,
            key_burst=settings.open_burst_per_key,
            default_timeout_s=settings.open_timeout_s,
            clock=clock,
            broker_up=self.broker_up,
            on_breaker=self.alerts.service.set_breaker,
        )
        self.kpis = KpiJob(
            self.reservation_store.engine,
            InfluxRows(str(settings.influx_url).rstrip("/"), settings.influx_db, token),
            state_of=lambda rid: None if (r := self.reservation_store.get(rid)) is None else r.state.value,
            nodes=lambda: len(self.fleet.records()),
            alert_counts=self.alerts.service.counts,
            registry=self.metrics.registry,
            store_lines=self.pipeline.submit,
            clock=clock,
            every_s=settings.kpi_every_s,
        )
        self.ingest = Ingest(
            self.fleet,
            self.store,
            self.metrics,
            already_stored=self.pipeline.seen,
            on_result=self.commands.on_result,
            on_ledger=self.reservations.on_ledger_event,
            on_ota=self.rollouts.on_ota,
            on_birth=self._provision,
            observe=self._observe,
            clock=clock,
            dead_letter_max_bytes=settings.dead_letter_max_bytes,
        )
        self._data_delivery: DeliveryHandler[AckToken] = DeliveryHandler(
            self.ingest, self.pipeline.submit, session="telemetry"
        )
        self._control_delivery: DeliveryHandler[AckToken] = DeliveryHandler(
            self.ingest, self.spool.submit, session="control"
        )
        self.metrics.oldest_unstored.set_function(self.oldest_unstored_s)
        self.metrics.spool_lines.set_function(lambda: self.spool.lines_waiting)

    def start(self) -> None:
        """Create the database if needed, start the writer, connect to the broker."""
        self.writer.ensure_database()
        self.pipeline.start()
        self.spool.start()
        self.webhooks.start()
        self.command_link.start()
        if self.receipt_flusher is not None:
            self.receipt_flusher.start()
        self.field.start()
        self.alerts.start()
        self.rollouts.start()
        self.control_link.start()
        self.link.start()
        log.info(
            "controller running mqtt=%s influx=%s db=%s store=%s nodes_known=%d",
            redact_url(self.settings.mqtt_url),
            redact_url(self.settings.influx_url),
            self.settings.influx_db,
            self.settings.store_path,
            len(self.fleet.records()),
        )

    def stop(self) -> None:
        """Take no more deliveries, write what is buffered (acknowledging it and sending its receipts), then
        disconnect and close the store."""
        self._data_delivery.stop()
        self._control_delivery.stop()
        for link in (self.link, self.control_link):
            link.pause()
        self.rollouts.stop()
        self.alerts.stop()
        self.field.stop()
        self.spool.stop(timeout_s=SPOOL_STOP_S)
        self.pipeline.stop(timeout_s=STOP_FLUSH_S)
        links = [threading.Thread(target=link.stop) for link in (self.link, self.control_link)]
        for stopping in links:
            stopping.start()
        for stopping in links:
            stopping.join()
        if self.receipt_flusher is not None:
            self.receipt_flusher.stop()
        self.command_link.stop()
        self.webhooks.stop()
        self.writer.close()
        self.store.close()
        self.reservation_store.close()

    def broker_up(self) -> bool:
        """Whether the MQTT connections opens need (results in, commands out) are up."""
        return self.control_link.connected.is_set() and self.command_link.connected.is_set()

    def alive(self) -> bool:
        """Whether the threads ingest depends on run (liveness: they only end at :meth:`stop`)."""
        return self.link.alive and self.control_link.alive and self.pipeline.alive and self.spool.alive

    def oldest_unstored_s(self) -> float:
        """Age of the oldest message or point received and not yet in InfluxDB (0: none waits)."""
        return max(self.pipeline.oldest_age_s(), self.spool.oldest_age_s())

    def health(self) -> Health:
        """Readiness: serving, degraded (InfluxDB or telemetry behind, opens work) or not ready (opens cannot)."""
        return assess(
            control_up=self.control_link.connected.is_set(),
            commands_up=self.command_link.connected.is_set(),
            telemetry_up=self.link.connected.is_set(),
            influx_unreachable_s=self.writer.unreachable_s(),
            messages_waiting=self.pipeline.waiting + self.spool.waiting + self.spool.lines_waiting,
            oldest_unstored_s=self.oldest_unstored_s(),
        )

    def find_key(self, token: str) -> OperatorKey | ApiKey | TechnicianKey | None:
        """The valid API key ``token`` names, of any kind (operator, courier partner or field technician), or None."""
        return (
            self.operators.authenticate(token)
            or self.reservation_store.authenticate(token)
            or self.field_store.authenticate(token)
        )

    def set_maintenance(self, node_id: str, reason: str, operator: str) -> Maintenance:
        """Keep ``node_id`` out of the reservation pool (reservations it holds carry on) until cleared."""
        maintenance = Maintenance(reason, datetime.fromtimestamp(self.clock(), UTC), operator)
        self.operators.set_maintenance(node_id, maintenance)
        self.maintenance[node_id] = maintenance
        self.alerts.set_maintenance(node_id, True)
        self.pipeline.submit([maintenance_line(node_id, "start", operator, reason, time.time_ns())])
        log.warning(
            "node under maintenance node=%s operator=%s reason=%r "
            "action=no new reservations go to it; DELETE /v1/nodes/%s/maintenance returns it to service",
            node_id,
            operator,
            reason,
            node_id,
        )
        return maintenance

    def clear_maintenance(self, node_id: str, operator: str) -> bool:
        """Return ``node_id`` to the reservation pool (waiting requests may get it); False if it was not out."""
        cleared = self.operators.clear_maintenance(node_id)
        ended = self.maintenance.pop(node_id, None)
        self.alerts.set_maintenance(node_id, False)
        if ended is not None or cleared:
            log.info("node back in service node=%s operator=%s", node_id, operator)
            reason = ended.reason if ended is not None else ""
            self.pipeline.submit([maintenance_line(node_id, "end", operator, reason, time.time_ns())])
            self.reservations.serve_waitlists()
            return True
        return False

    def _observe(self, message: Ingested, now: float) -> None:
        """An ingested message, to the swap queue first (so its telemetry precedes the alerts it causes), then the
        alert rules."""
        self.field.observe(message, now)
        self.alerts.observe(message, now)

    def _stored(self, keys: list[MessageKey]) -> None:
        """Messages the controller is done with (stored, durable, duplicate or dead letter): to the next receipts."""
        if self.receipt_flusher is not None:
            self.receipts.record(keys)

    def _spooled(self, keys: list[MessageKey]) -> None:
        """Control messages acted on and spooled: remembered for deduplication, and done with."""
        self.pipeline.remember(keys)
        self._stored(keys)

    def _on_message(self, topic_name: str, payload: bytes, token: AckToken | None) -> None:
        """A telemetry delivery: stored in InfluxDB, then acknowledged."""
        self._data_delivery(topic_name, payload, token)

    def _on_control(self, topic_name: str, payload: bytes, token: AckToken | None) -> None:
        """A status, result or event: acted on, its points spooled in the store, then acknowledged."""
        self._control_delivery(topic_name, payload, token)

    def _provision(self, birth: StatusBirth) -> None:
        """Send a newly (re)born node its own code key (derived, so every controller sends the same one)."""
        key_hex = node_key(self._code_secret, birth.node_id).hex()
        self.commands.send(self.commands.provision_key(birth.node_id, birth.boot_id, birth.seq, key_hex))

    async def snapshot_fleet(self) -> None:
        """Every ``fleet_snapshot_s``: serve the waitlists, write node counts (``fleet``), open alerts and KPIs."""
        while True:
            await asyncio.to_thread(self.store.refresh, self.fleet)  # nodes other controllers saw
            await asyncio.to_thread(self.reservations.serve_waitlists)
            counts = self.fleet.counts(self.clock())
            self.pipeline.submit(
                [
                    fleet_line(
                        counts[NodeState.ONLINE],
                        counts[NodeState.STALE],
                        counts[NodeState.OFFLINE],
                        len(self.maintenance),
                        time.time_ns(),
                    )
                ]
            )
            await asyncio.to_thread(self.kpis.snapshot)  # open alerts by severity; the field KPIs when due
            await asyncio.sleep(self.settings.fleet_snapshot_s)
