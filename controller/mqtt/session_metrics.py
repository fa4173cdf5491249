"""Metrics of the ingest session's connection: why it was dropped, packets it did not expect, acks it withheld."""

from prometheus_client import CollectorRegistry, Counter


class SessionMetrics:
    """Counters on ``registry`` (the controller's, or a test's own)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.drops = Counter(
            "lockerfleet_mqtt_session_drops",
            "Ingest session connections ended other than by a stop, by reason (protocol faults, keep-alive "
            "timeouts, takeovers, broker disconnects, lost connections); each is followed by a reconnect.",
            ["reason"],
            registry=registry,
        )
        self.unknown_packets = Counter(
            "lockerfleet_mqtt_unknown_packets",
            "Well-formed MQTT packets of a type the ingest session does not expect (skipped), by type.",
            ["type"],
            registry=registry,
        )
        self.stale_acks = Counter(
            "lockerfleet_mqtt_stale_acks",
            "Acknowledgements not sent because their connection had ended: the broker delivers those messages again "
            "and the copies are acknowledged instead (nothing to do; many mean frequent reconnects).",
            registry=registry,
        )
