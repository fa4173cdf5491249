"""The controller's MQTT adapter: a paho-mqtt client with manual acknowledgement and a persistent session.

Statuses and command results are ordinary subscriptions (every controller process needs all of them, and shared
subscriptions get no retained births). Telemetry and events can be spread over several controller processes
with an MQTT 5 shared subscription (``share_group``). The receive maximum bounds how many messages the broker
hands over before they are acknowledged: it is the ingest buffer's size and its back-pressure.
"""

import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_random_exponential

from schemas import Channel, fleet_filter

log = logging.getLogger(__name__)

AckToken = tuple[int, int]
"""What acknowledges one delivery: ``(mid, qos)``."""


@dataclass(frozen=True)
class LinkSettings:
    """Connection parameters of the controller's MQTT client."""

    url: str
    client_id: str
    share_group: str | None = None
    receive_maximum: int = 5000
    session_expiry_s: int = 3600
    keepalive_s: int = 30


class ControllerLink:
    """Subscribes to the fleet, hands each delivery to ``on_message`` and publishes commands."""

    def __init__(self, settings: LinkSettings, on_message: Callable[[str, bytes, AckToken | None], None]) -> None:
        self.settings = settings
        self._on_message = on_message
        self.connected = threading.Event()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=settings.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        parts = urlsplit(settings.url)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 1883
        if parts.username:
            self._client.username_pw_set(parts.username, parts.password)
        self._client.max_inflight_messages_set(1000)
        self._client.max_queued_messages_set(0)
        self._client.reconnect_delay_set(1, 30)
        self._client.on_connect = self._connected
        self._client.on_disconnect = self._disconnected
        self._client.on_message = self._message

    def start(self, timeout_s: float = 30.0) -> None:
        """Connect (retrying with backoff for up to ``timeout_s``) and run the network loop in a thread."""
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = self.settings.session_expiry_s
        properties.ReceiveMaximum = self.settings.receive_maximum
        for attempt in Retrying(
            retry=retry_if_exception_type(OSError),
            wait=wait_random_exponential(multiplier=0.2, max=5),
            stop=stop_after_delay(timeout_s),
            reraise=True,
        ):
            with attempt:
                self._client.connect(
                    self._host,
                    self._port,
                    keepalive=self.settings.keepalive_s,
                    clean_start=False,
                    properties=properties,
                )
        self._client.loop_start()
        if not self.connected.wait(timeout_s):
            raise ConnectionError(f"broker at {self.settings.url} accepted no session within {timeout_s} s")

    def stop(self) -> None:
        """Disconnect; messages not yet acknowledged are redelivered to the session later."""
        self._client.disconnect()
        self._client.loop_stop()

    def ack(self, tokens: list[AckToken]) -> None:
        """Acknowledge deliveries (in the order they arrived)."""
        for mid, qos in tokens:
            self._client.ack(mid, qos)

    def publish(self, topic: str, payload: bytes, expiry_s: float) -> None:
        """Publish a QoS 1 command that the broker discards if undelivered after ``expiry_s``."""
        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        properties.MessageExpiryInterval = max(1, math.ceil(expiry_s))
        info = self._client.publish(topic, payload, qos=1, properties=properties)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise ConnectionError(f"publish to {topic} failed: {mqtt.error_string(info.rc)}")

    def _filters(self) -> list[tuple[str, int]]:
        group = self.settings.share_group
        return [
            (fleet_filter(Channel.STATUS), 1),
            (fleet_filter(Channel.RESULT), 1),
            (fleet_filter(Channel.TELEMETRY, group), 1),
            (fleet_filter(Channel.EVENT, group), 1),
        ]

    def _connected(
        self, client: mqtt.Client, _u: object, flags: mqtt.ConnectFlags, rc: ReasonCode, _p: Properties | None
    ) -> None:
        if rc.is_failure:
            log.error(
                "broker refused the controller url=%s reason=%s action=check credentials/ACL", self.settings.url, rc
            )
            return
        client.subscribe(self._filters())
        log.info(
            "connected url=%s client_id=%s session_present=%s share_group=%s",
            self.settings.url,
            self.settings.client_id,
            flags.session_present,
            self.settings.share_group,
        )
        self.connected.set()

    def _disconnected(
        self, _c: mqtt.Client, _u: object, _f: mqtt.DisconnectFlags, rc: ReasonCode, _p: Properties | None
    ) -> None:
        self.connected.clear()
        if rc.value != 0:
            log.warning(
                "broker connection lost url=%s reason=%s action=reconnecting; unacknowledged messages will be "
                "redelivered",
                self.settings.url,
                rc,
            )

    def _message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        token = (msg.mid, msg.qos) if msg.qos > 0 else None
        self._on_message(msg.topic, bytes(msg.payload), token)
