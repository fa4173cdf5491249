"""The controller's KPI job: open alerts by severity every fleet snapshot, the field KPIs every ``kpi_every_s``.

Inputs are what is stored already: alert announcements (table ``alert_deliveries``, the last day), ``work_order``
points (the last week, so a swap verified today finds the alerts of an order opened days ago) and ``ledger`` points
from InfluxDB (deposits of the last week, every reservation change of the last day), and the controller's
reservation states. Outputs: measurements ``alert_open`` and ``kpi`` and the ``lockerfleet_kpi_*`` gauges.
"""

import logging
import ssl
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import sqlalchemy as sa
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from controller.influx.lineproto import alert_open_line, kpi_line
from controller.kpis.figures import FieldKpis, LedgerPoint, WorkOrderPoint, field_kpis
from controller.store.alerts import alert_deliveries
from schemas.alert import AlertNotice

log = logging.getLogger(__name__)

DAY_S = 86_400.0
LOOKBACK_S = 7 * DAY_S
"""How far back deposits and work orders are read, for pickups and swaps that end in the window."""
SEVERITIES = ("info", "warning", "critical")

_WORK_ORDERS = (
    'SELECT "order_id", "alert_ids", "duration_s" FROM "work_order" '
    'WHERE time >= {start} AND time < {end} GROUP BY "event", "kind", "cancel_reason"'
)
_DEPOSITS = (
    'SELECT "reservation_id" FROM "ledger" WHERE "transition" = \'deposited\' AND time >= {start} AND time < {end}'
)
_LEDGER = (
    'SELECT "reservation_id", "replayed" FROM "ledger" WHERE time >= {start} AND time < {end} GROUP BY "transition"'
)

_GAUGES = (
    ("mean_time_to_swap_s", "lockerfleet_kpi_mean_time_to_swap_seconds", "First alert to verified swap, mean"),
    ("mean_time_to_acknowledge_s", "lockerfleet_kpi_mean_time_to_acknowledge_seconds", "Firing to ack, mean"),
    ("alerts_per_100_nodes_per_day", "lockerfleet_kpi_alerts_per_100_nodes_per_day", "Alerts raised"),
    ("noise_share", "lockerfleet_kpi_noise_ratio", "Alerts resolved unacknowledged with no technician sent, share"),
    ("fulfilment_mean_s", "lockerfleet_kpi_fulfilment_mean_seconds", "Deposit to pickup, mean"),
    ("fulfilment_p90_s", "lockerfleet_kpi_fulfilment_p90_seconds", "Deposit to pickup, 90th percentile"),
    ("sync_success_share", "lockerfleet_kpi_reservation_sync_ratio", "Reservations right after a partition, share"),
)


class InfluxRows:
    """Reads rows of InfluxQL queries (v1 ``/query``) from the controller's database."""

    def __init__(self, url: str, db: str, token: str | None, timeout_s: float = 30.0) -> None:
        self._url, self._db, self._timeout_s = url, db, timeout_s
        self._headers = {"Authorization": f"Token {token}"} if token else {}
        self._tls: ssl.SSLContext | None = None

    def __call__(self, query: str) -> list[dict[str, Any]]:
        """Every row as column → value, with its series' tags; raises ``httpx.HTTPError`` if InfluxDB fails."""
        # httpx's default TLS context (its CA bundle loaded: tens of ms of CPU), made once, not once per query
        self._tls = self._tls or httpx.create_ssl_context()
        with httpx.Client(base_url=self._url, headers=self._headers, timeout=self._timeout_s, verify=self._tls) as http:
            response = http.get("/query", params={"db": self._db, "q": query, "epoch": "ns"})
            response.raise_for_status()
        rows: list[dict[str, Any]] = []
        for result in response.json().get("results", []):
            if "error" in result:
                raise httpx.HTTPError(f"InfluxDB refused the query: {result['error']}")
            for series in result.get("series", []):
                tags = series.get("tags", {})
                rows += [{**tags, **dict(zip(series["columns"], v, strict=True))} for v in series["values"]]
        return rows


class _KpiGauges(Collector):
    def __init__(self, latest: Callable[[], FieldKpis | None]) -> None:
        self._latest = latest

    def collect(self) -> Iterator[Metric]:
        kpis = self._latest()
        for attribute, name, doc in _GAUGES:
            family = GaugeMetricFamily(name, f"{doc} over the last day (absent while nothing measures it).")
            value = None if kpis is None else getattr(kpis, attribute)
            if value is not None:
                family.add_metric([], value)
            yield family


def _in_a_thread(work: Callable[[], None]) -> None:
    threading.Thread(target=work, name="kpis", daemon=True).start()


class KpiJob:
    """Call :meth:`snapshot` every fleet snapshot; ``spawn`` runs each KPI computation (default: in a new thread)."""

    def __init__(
        self,
        store: sa.Engine,
        influx: Callable[[str], list[dict[str, Any]]],
        *,
        state_of: Callable[[str], str | None],
        nodes: Callable[[], int],
        alert_counts: Callable[[], dict[tuple[str, str, str], int]],
        registry: CollectorRegistry,
        store_lines: Callable[[list[str]], None],
        clock: Callable[[], float],
        every_s: float,
        spawn: Callable[[Callable[[], None]], None] = _in_a_thread,
    ) -> None:
        self._store = store
        self._influx = influx
        self._state_of = state_of
        self._nodes = nodes
        self._alert_counts = alert_counts
        self._store_lines = store_lines
        self._clock = clock
        self._every_s = every_s
        self._spawn = spawn
        self._busy = threading.Event()
        self._due = 0.0
        self.latest: FieldKpis | None = None
        """The last KPIs computed (what the gauges show)."""
        registry.register(_KpiGauges(lambda: self.latest))

    def snapshot(self) -> None:
        """Write the open alerts by severity; when due, start computing the KPIs of the last day (off this thread:
        slow InfluxDB answers must not hold up the fleet snapshot, and a computation still running is not doubled)."""
        now = self._clock()
        self._store_lines(self._open_alerts(now))
        if now >= self._due and not self._busy.is_set():
            self._due = now + self._every_s
            self._busy.set()
            self._spawn(lambda: self._write_kpis(now))

    def _write_kpis(self, now: float) -> None:
        try:
            self.latest = self.compute(now)
            self._store_lines([kpi_line(self.latest, _ns(now))])
        except (httpx.HTTPError, sa.exc.SQLAlchemyError) as exc:
            log.warning(
                "field KPIs not computed error=%r action=check InfluxDB and the controller store; retried in %.0f s "
                "(the gauges keep the last figures)",
                exc,
                self._every_s,
            )
        except Exception:
            log.exception("field KPIs failed action=report this bug; retried in %.0f s", self._every_s)
        finally:
            self._busy.clear()

    def compute(self, end: float) -> FieldKpis:
        """The KPIs of ``[end - 1 day, end)`` from the store and InfluxDB."""
        start = end - DAY_S
        return field_kpis(
            self._notices(start - 60.0),
            self._work_orders(end - LOOKBACK_S, end),
            self._ledger(start, end),
            self._state_of,
            self._nodes(),
            start,
            end,
        )

    def _open_alerts(self, now: float) -> list[str]:
        open_: dict[str, dict[str, int]] = {s: {"pending": 0, "firing": 0} for s in SEVERITIES}
        for (_rule, severity, state), count in self._alert_counts().items():
            if severity in open_ and state in open_[severity]:
                open_[severity][state] += count
        return [alert_open_line(s, c["pending"], c["firing"], _ns(now)) for s, c in open_.items()]

    def _notices(self, since: float) -> list[AlertNotice]:
        query = sa.select(alert_deliveries.c.body).where(alert_deliveries.c.created_at >= since)
        with self._store.connect() as db:
            return [AlertNotice.model_validate_json(body) for (body,) in db.execute(query)]

    def _work_orders(self, start: float, end: float) -> list[WorkOrderPoint]:
        rows = self._influx(_WORK_ORDERS.format(start=_ns(start), end=_ns(end)))
        return [
            WorkOrderPoint(
                order_id=r["order_id"],
                event=r["event"],
                kind=r["kind"],
                at=r["time"] / 1e9,
                alert_ids=tuple(a for a in (r["alert_ids"] or "").split(",") if a),
                duration_s=r["duration_s"],
                cancel_reason=r.get("cancel_reason") or None,
            )
            for r in rows
            if r.get("order_id")
        ]

    def _ledger(self, start: float, end: float) -> list[LedgerPoint]:
        deposits = self._influx(_DEPOSITS.format(start=_ns(end - LOOKBACK_S), end=_ns(start)))
        recent = self._influx(_LEDGER.format(start=_ns(start), end=_ns(end)))
        return [
            LedgerPoint(r["reservation_id"], r.get("transition", "deposited"), r["time"] / 1e9, bool(r.get("replayed")))
            for r in deposits + recent
            if r.get("reservation_id")
        ]


def _ns(seconds: float) -> int:
    return round(seconds * 1e9)
