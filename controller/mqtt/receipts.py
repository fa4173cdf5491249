"""Publishes delivery receipts (:mod:`controller.ingest.receipts`) through the command publisher's connection.

Every ``interval_s`` a thread drains what was stored since and publishes one receipt per node and boot (QoS 1): at
most one message per node per interval, and none for a node with nothing new stored. While the publisher is not
connected the receipts wait in the accumulator (nothing new is stored meanwhile), so they never crowd commands out of
paho's queue. A receipt that is lost anyway (controller killed before a flush, paho's queue full) costs no data: the
node keeps what it covers and re-sends it on its next connection, where it is recognised as a duplicate and
receipted again.
"""

import logging
import threading
from typing import Final

from prometheus_client import Counter

from controller.commands.service import CommandNotSentError
from controller.ingest.receipts import Receipts
from controller.mqtt.publisher import CommandLink
from schemas import Channel, encode, topic

log = logging.getLogger(__name__)

RECEIPT_EXPIRY_S: Final = 3600.0
"""How long the broker keeps a receipt for a node that is away (back sooner, it re-sends what is uncovered anyway)."""


class ReceiptFlusher:
    """Drains ``receipts`` every ``interval_s`` onto ``link``; counts each receipt in ``published`` by outcome."""

    def __init__(self, receipts: Receipts, link: CommandLink, interval_s: float, published: Counter) -> None:
        self._receipts = receipts
        self._link = link
        self._interval_s = interval_s
        self._sent = published.labels("published")
        self._refused = published.labels("refused")
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stored-receipts", daemon=True)

    def start(self) -> None:
        """Start flushing in the background."""
        self._thread.start()

    def stop(self) -> None:
        """Flush once more (what was stored until now) and stop."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(2.0)
        self.flush()

    def flush(self) -> int:
        """Publish the receipts of everything stored since the last flush; how many were handed to the publisher."""
        if not self._link.connected.is_set():
            return 0  # kept for the next flush after the reconnect
        sent = 0
        for receipt in self._receipts.drain():
            try:
                self._link.publish(topic(receipt.node_id, Channel.STORED), encode(receipt), RECEIPT_EXPIRY_S)
            except CommandNotSentError as exc:
                self._refused.inc()
                log.warning(
                    "delivery receipt not sent node=%s boot_id=%d error=%s action=none: the node re-sends what it "
                    "covers on its next connection; if this repeats, the broker is not taking commands either",
                    receipt.node_id,
                    receipt.boot_id,
                    exc,
                )
                continue
            sent += 1
        self._sent.inc(sent)
        return sent

    def _run(self) -> None:
        while not self._stopping.wait(self._interval_s):
            try:
                self.flush()
            except Exception:  # a bug must not end the receipts: log it and go on
                log.exception("publishing delivery receipts failed action=report this bug; retrying next interval")
