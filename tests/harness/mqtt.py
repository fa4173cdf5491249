"""Talk to a real broker from tests: publish, and capture everything delivered on a topic filter."""

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode


@dataclass(frozen=True)
class Delivered:
    """One message as the broker delivered it."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    received_at: float


def wait_until(predicate: Callable[[], bool], timeout_s: float, interval_s: float = 0.01) -> bool:
    """Poll ``predicate`` until true or ``timeout_s`` passes; return whether it became true."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)
    return True


def connect(
    url: str,
    client_id: str = "",
    *,
    persistent: bool = False,
    on_message: Callable[[mqtt.Client, object, mqtt.MQTTMessage], None] | None = None,
) -> mqtt.Client:
    """A connected MQTT 5 client with its network loop running (reconnecting by itself).

    ``persistent`` keeps the session on the broker (clean start off, one hour expiry), so messages published
    while this client is disconnected are delivered when it returns: right after the connection is accepted,
    which is why ``on_message`` is set before connecting.
    """
    parts = urlsplit(url)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.reconnect_delay_set(1, 2)
    if parts.username:
        client.username_pw_set(parts.username, parts.password)
    properties = None
    if persistent:
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = 3600
    connected = threading.Event()

    def on_connect(_c: mqtt.Client, _u: object, _f: mqtt.ConnectFlags, rc: ReasonCode, _p: Properties | None) -> None:
        if not rc.is_failure:
            connected.set()

    client.on_connect = on_connect
    if on_message is not None:
        client.on_message = on_message
    client.connect(parts.hostname or "127.0.0.1", parts.port or 1883, clean_start=not persistent, properties=properties)
    client.loop_start()
    if not connected.wait(5):
        client.loop_stop()
        raise AssertionError(f"could not connect to broker at {url}")
    return client


def disconnect(client: mqtt.Client) -> None:
    """Disconnect and stop the client's network thread (which paho may already have ended by itself)."""
    client.disconnect()
    with contextlib.suppress(AttributeError):  # paho cleared its thread between its own check and join
        client.loop_stop()


class Capture:
    """Subscribes to a filter and records every delivery, for assertions on what the broker delivered."""

    def __init__(self, url: str, topic_filter: str, qos: int = 1, *, client_id: str = "") -> None:
        self.messages: list[Delivered] = []
        self._lock = threading.Lock()
        subscribed = threading.Event()
        self._client = connect(url, client_id, persistent=bool(client_id), on_message=self._on_message)
        self._client.on_subscribe = lambda *_args: subscribed.set()
        self._client.subscribe(topic_filter, qos)
        if not subscribed.wait(5):
            raise AssertionError(f"subscription to {topic_filter} not acknowledged")

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(Delivered(msg.topic, bytes(msg.payload), msg.qos, bool(msg.retain), time.monotonic()))

    def snapshot(self) -> list[Delivered]:
        """Copy of what has been delivered so far."""
        with self._lock:
            return list(self.messages)

    def wait_for(self, count: int, timeout_s: float = 5.0) -> list[Delivered]:
        """Wait until at least ``count`` messages arrived; return them (fewer if the wait timed out)."""
        wait_until(lambda: len(self.messages) >= count, timeout_s)
        return self.snapshot()

    def wait_until(self, predicate: Callable[[list[Delivered]], bool], timeout_s: float = 5.0) -> list[Delivered]:
        """Wait until ``predicate`` holds for what was delivered; return the deliveries either way."""
        wait_until(lambda: predicate(self.snapshot()), timeout_s)
        return self.snapshot()

    def close(self) -> None:
        """Disconnect."""
        disconnect(self._client)
