"""Stored announcements onto the MQTT alert channel and into InfluxDB (measurement ``alert``).

One thread reads the outbox (``alert_deliveries`` rows not yet published), publishes each at QoS 1 on
``lockerfleet/v1/alerts/<site>`` (``_fleet`` without a site; never retained), waits for the broker's acknowledgement,
hands the ``alert`` point to the write pipeline and marks the row published. While the broker is away rows wait; a
crash between the acknowledgement and the mark repeats one message with the same ``delivery_key``.
"""

import logging
import threading
from collections.abc import Callable

from sqlalchemy.exc import SQLAlchemyError

from controller.influx.lineproto import alert_line
from controller.store.alerts import AlertStore
from schemas.alert import AlertNotice
from schemas.topics import alert_topic

log = logging.getLogger(__name__)

Publish = Callable[[str, bytes], None]
"""Publish at QoS 1 and return once the broker has it; raise ``ConnectionError`` otherwise."""


class AlertPublisher:
    """Drains the announcement outbox; :meth:`wake` after a commit, :meth:`start` / :meth:`stop`."""

    def __init__(
        self,
        store: AlertStore,
        publish: Publish,
        store_lines: Callable[[list[str]], None],
        *,
        connected: Callable[[], bool],
        clock: Callable[[], float],
        on_published: Callable[[AlertNotice], None] = lambda _n: None,
        poll_s: float = 2.0,
    ) -> None:
        self._store = store
        self._publish = publish
        self._store_lines = store_lines
        self._connected = connected
        self._clock = clock
        self._on_published = on_published
        self._poll_s = poll_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alert-publisher", daemon=True)

    def start(self) -> None:
        """Start publishing (what an earlier run left in the outbox goes first)."""
        self._thread.start()

    def wake(self) -> None:
        """New announcements are stored: publish them now."""
        self._wake.set()

    def stop(self) -> None:
        """Publish what is stored (if the broker is there) and stop."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(15)

    def drain(self) -> int:
        """Publish every stored announcement the broker takes; returns how many were published."""
        done = 0
        while self._connected():
            batch = self._store.unpublished()
            if not batch:
                break
            published: list[int] = []
            lines: list[str] = []
            try:
                for row in batch:
                    notice = AlertNotice.model_validate(row.body)
                    self._publish(alert_topic(notice.site_id), notice.model_dump_json().encode())
                    published.append(row.id)
                    lines.append(alert_line(notice))
                    self._on_published(notice)
            finally:
                if published:
                    self._store.published(published, self._clock())
                    self._store_lines(lines)
                    done += len(published)
        return done

    def _run(self) -> None:
        while True:
            stopping = self._stop.is_set()
            try:
                self.drain()
            except ConnectionError as exc:
                log.warning(
                    "alert not published error=%s action=none: it is kept and sent when the broker is back", exc
                )
            except SQLAlchemyError as exc:
                log.warning(
                    "alert outbox unreadable error=%r action=check the controller store; alerts wait in it and are "
                    "published once it answers",
                    exc,
                )
            except Exception:
                log.exception("alert publishing failed action=report this bug; the outbox is retried")
            if stopping:
                return
            self._wake.wait(self._poll_s)
            self._wake.clear()
