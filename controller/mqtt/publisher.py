"""Commands to nodes: a paho-mqtt publisher (QoS 1, MQTT 5 message expiry), separate from the ingest session.

It logs in as its own broker user, the ingest session's user name with :data:`COMMANDS_SUFFIX` (same password):
a broker that binds client ids to user names (compose.yaml's ``use_username_as_clientid``) would otherwise give
both connections one client id, and each would take the other's session over.

While the broker is away paho keeps QoS 1 messages (up to :data:`MAX_QUEUED`) and sends them after reconnecting:
such a publish is not a failure. Every (re)connect reads the broker files again, so renewed certificates, CA and
password take effect without a restart.
"""

import logging
import math
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from controller.commands.service import CommandNotSentError
from schemas.broker import NO_BROKER_FILES, BrokerFiles, broker_address, redact_url

log = logging.getLogger(__name__)

COMMANDS_SUFFIX = "-commands"
"""Appended to the ingest session's broker user name for the command publisher's."""

MAX_QUEUED = 10_000
"""Commands kept (in flight or waiting for the broker) before a publish surely fails."""


class CommandLink:
    """Publishes commands as the broker user ``<user>-commands``; paho reconnects by itself after the first connect."""

    def __init__(
        self,
        url: str,
        client_id: str,
        broker_files: BrokerFiles = NO_BROKER_FILES,
        max_queued: int = MAX_QUEUED,
    ) -> None:
        self.url = redact_url(url)
        """The broker URL as logged (without its password)."""
        self._broker = (url, broker_files)
        broker = broker_address(url, broker_files)
        self._address = (broker.host, broker.port)
        self.connected = threading.Event()
        self.username = f"{broker.username}{COMMANDS_SUFFIX}" if broker.username else None
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self._max_queued = max_queued
        self._client.max_queued_messages_set(max_queued)
        if self.username:
            self._client.username_pw_set(self.username, broker.password)
        if broker.tls is not None:
            self._client.tls_set_context(broker.tls)
        self._client.reconnect_delay_set(1, 30)
        self._client.on_pre_connect = self._reread_files
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = lambda *_args: self.connected.clear()

    def start(self, timeout_s: float = 30.0) -> None:
        """Connect in the background; return once connected or raise after ``timeout_s``."""
        self._client.connect_async(*self._address)
        self._client.loop_start()
        if not self.connected.wait(timeout_s):
            raise ConnectionError(f"command publisher could not connect to {self.url} within {timeout_s} s")

    def stop(self, timeout_s: float = 2.0) -> None:
        """Disconnect; wait at most ``timeout_s`` for paho's thread (a connect to an unreachable broker may hang)."""
        self._client.disconnect()
        stopping = threading.Thread(target=self._client.loop_stop, name="mqtt-commands-stop", daemon=True)
        stopping.start()
        stopping.join(timeout_s)

    def publish(self, topic: str, payload: bytes, expiry_s: float) -> None:
        """Publish at QoS 1; the broker discards the message if it is still undelivered after ``expiry_s``."""
        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        properties.MessageExpiryInterval = max(1, math.ceil(expiry_s))
        info = self._client.publish(topic, payload, qos=1, properties=properties)
        if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:  # the only answer that leaves the message out of paho's queue
            raise CommandNotSentError(
                f"{self._max_queued} commands already wait for the broker at {self.url}; publish to {topic} refused"
            )
        if info.rc == mqtt.MQTT_ERR_NO_CONN:
            log.info("command queued until the broker is back topic=%s url=%s", topic, self.url)

    def publish_acknowledged(self, topic: str, payload: bytes, timeout_s: float = 10.0) -> None:
        """Publish at QoS 1 (no expiry) and return once the broker acknowledged it; ``ConnectionError`` otherwise."""
        if not self.connected.is_set():
            raise ConnectionError(f"not connected to the broker at {self.url}")
        info = self._client.publish(topic, payload, qos=1)
        if info.rc == mqtt.MQTT_ERR_SUCCESS:
            try:
                info.wait_for_publish(timeout_s)
            except (RuntimeError, ValueError) as exc:
                raise ConnectionError(f"publish to {topic} failed: {exc}; broker at {self.url}") from exc
        if not info.is_published():
            raise ConnectionError(f"publish to {topic} not acknowledged within {timeout_s} s; broker at {self.url}")

    def _reread_files(self, client: mqtt.Client, _userdata: object) -> None:
        """Before each (re)connect: read the password and TLS files again (certificates get renewed)."""
        try:
            broker = broker_address(*self._broker)
        except (OSError, ValueError) as exc:
            log.error(
                "broker files unreadable at reconnect url=%s error=%s action=fix --mqtt-ca-file, --mqtt-cert-file, "
                "--mqtt-key-file or --mqtt-password-file; connecting with the files read before",
                self.url,
                exc,
            )
            return
        if self.username:
            client.username_pw_set(self.username, broker.password)
        if broker.tls is not None:
            client._ssl_context = broker.tls  # paho refuses a second tls_set_context: replace its context

    def _on_connect(
        self, _c: mqtt.Client, _u: object, _f: mqtt.ConnectFlags, rc: ReasonCode, _p: Properties | None
    ) -> None:
        if rc.is_failure:
            log.error(
                "broker refused the command publisher url=%s user=%s reason=%s action=give the broker user %s "
                "the ingest session's password and the right to write commands",
                self.url,
                self.username,
                rc,
                self.username,
            )
            return
        self.connected.set()
