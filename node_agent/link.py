"""The agent's MQTT link: one persistent session, the outbox drained onto it in order, commands handed up.

A thin adapter around aiomqtt. Everything published goes through the durable outbox first; the link moves items from
the outbox to the broker, tells the outbox when the broker acknowledged them (QoS 1 PUBACK) and when the controller's
delivery receipts (``lockers/v1/<node>/stored``) cover them, and on every new connection sends the items not covered
yet again, oldest first, before newer ones (:mod:`node_agent.outbox` says when an item leaves). The birth and last
will are the exception: they describe the connection itself and are built fresh at every connect.
The simulator cuts and mends a link (:meth:`Link.cut`, :meth:`Link.mend`) to play a node or a site losing its network.
"""

import asyncio
import contextlib
import logging
import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_random_exponential

from node_agent.outbox import Outbox
from schemas.broker import NO_BROKER_FILES, BrokerFiles, broker_address, redact_url
from schemas.codec import decode_message
from schemas.errors import PayloadError
from schemas.stored import StoredReceipt

log = logging.getLogger(__name__)

SESSION_EXPIRY_S: Final = 7 * 24 * 3600
"""How long the broker keeps the node's session (and queued commands) while it is away."""
OFFLINE_TIMEOUT_S: Final = 2.0
"""How long a clean stop waits for the broker to take the node's offline status."""


@dataclass(frozen=True)
class Publication:
    """A message the link publishes directly (birth, will)."""

    topic: str
    payload: bytes
    retain: bool = True


@dataclass(frozen=True)
class LinkConfig:
    """Connection parameters of the link."""

    url: str
    client_id: str
    broker_files: BrokerFiles = NO_BROKER_FILES
    keepalive_s: int = 30
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0
    replay_rate_per_s: float = 200.0
    window: int = 32


class _Replay:
    """One connection's replay of the backlog it found: one log line when it is done (or cut short), not per batch."""

    def __init__(self, backlog: int) -> None:
        self.backlog = backlog
        self.messages = 0
        self.first_id: int | None = None
        self.last_id: int | None = None
        self.started = time.monotonic()
        self._open = backlog > 0

    def sent(self, first_id: int, last_id: int, count: int) -> None:
        """Count one acknowledged batch (outbox ids ``first_id``..``last_id``)."""
        if self._open:
            self.first_id = first_id if self.first_id is None else self.first_id
            self.last_id = last_id
            self.messages += count

    def done(self, client_id: str) -> None:
        """The outbox is empty: log the replay once."""
        if self._open:
            self._open = False
            log.info(
                "replay done client_id=%s messages=%d backlog_at_connect=%d outbox_ids=%s..%s seconds=%.1f",
                client_id,
                self.messages,
                self.backlog,
                self.first_id,
                self.last_id,
                time.monotonic() - self.started,
            )

    def interrupted(self, client_id: str, left: int) -> None:
        """The connection ended before the outbox was empty: log how far the replay got."""
        if self._open:
            self._open = False
            log.warning(
                "replay cut short client_id=%s messages=%d backlog_at_connect=%d outbox_ids=%s..%s left=%d "
                "action=none: the rest follows on the next connection",
                client_id,
                self.messages,
                self.backlog,
                self.first_id,
                self.last_id,
                left,
            )


class Link:
    """Keeps the node connected and its outbox flowing; call :meth:`run` in a task."""

    def __init__(
        self,
        config: LinkConfig,
        outbox: Outbox,
        *,
        connection_status: Callable[[], tuple[Publication, Publication]],
        command_topic: str,
        stored_topic: str,
        on_command: Callable[[str, bytes], None],
    ) -> None:
        self.config = config
        broker_address(config.url, config.broker_files)  # unreadable files stop the agent at start, not later
        self._outbox = outbox
        self._connection_status = connection_status
        self._command_topic = command_topic
        self._stored_topic = stored_topic
        self._on_command = on_command
        self._wake = asyncio.Event()
        self._client: aiomqtt.Client | None = None
        self._up = asyncio.Event()
        self._reachable = asyncio.Event()
        self._reachable.set()
        self.connected = False
        self.connects = 0

    def notify(self) -> None:
        """Tell the link the outbox has something new."""
        self._wake.set()

    def cut(self) -> None:
        """Lose the network: the connection fails under the session with no DISCONNECT (so the broker publishes
        the will) and no reconnect is tried until :meth:`mend`; the outbox keeps what is published meanwhile."""
        self._reachable.clear()
        client = self._client
        # aiomqtt keeps its paho client to itself, and paho's socket is the one way to fail the connection.
        sock = client._client.socket() if client is not None else None
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):  # already failing
                sock.shutdown(socket.SHUT_RDWR)

    def mend(self) -> None:
        """The network is back: connect again at once."""
        self._reachable.set()

    async def round_trip(self) -> None:
        """Wait until connected, then exchange one SUBSCRIBE/SUBACK with the broker (the node's own command topic
        again: nothing is published or delivered); raises :class:`aiomqtt.MqttError` when the broker does not answer.
        """
        while True:
            await self._up.wait()
            client = self._client
            if client is not None:
                await client.subscribe(self._command_topic, qos=1)
                return

    async def run(self) -> None:
        """Connect, serve, and reconnect with jittered exponential backoff, forever (until cancelled)."""
        while True:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(aiomqtt.MqttError),
                wait=wait_random_exponential(multiplier=self.config.reconnect_min_s, max=self.config.reconnect_max_s),
                before_sleep=self._log_retry,
            ):
                with attempt:
                    await self._session()
            # The session ended after being established: start over with a short jittered pause.
            await asyncio.sleep(random.uniform(0, self.config.reconnect_min_s))

    def _log_retry(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        sleep = state.next_action.sleep if state.next_action is not None else 0.0
        log.warning(
            "broker unreachable client_id=%s url=%s error=%r backlog=%d action=retrying in %.1fs; "
            "check the broker and the network, the outbox keeps everything meanwhile",
            self.config.client_id,
            redact_url(self.config.url),
            error,
            len(self._outbox),
            sleep,
        )

    async def _session(self) -> None:
        await self._reachable.wait()
        # A fresh birth/will pair per attempt: an attempt that timed out waiting for its CONNACK may still have
        # reached the broker, which then publishes its will; a reused pair would give the next birth a lower seq
        # than that will, and the controller would keep the node offline while it reports.
        birth, will = self._connection_status()
        broker = broker_address(self.config.url, self.config.broker_files)  # re-read: files get renewed
        connect_properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        connect_properties.SessionExpiryInterval = SESSION_EXPIRY_S
        client = aiomqtt.Client(
            broker.host,
            broker.port,
            username=broker.username,
            password=broker.password,
            tls_context=broker.tls,
            identifier=self.config.client_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=False,
            properties=connect_properties,
            keepalive=self.config.keepalive_s,
            will=aiomqtt.Will(will.topic, will.payload, qos=1, retain=True),
            max_queued_incoming_messages=1000,
        )
        client.pending_calls_threshold = self.config.window + 2  # a full window (plus status) is normal, not news
        async with client:
            # Subscribe first: the controller answers a birth at once (e.g. the node's code key), and on a new
            # session a command published before the subscription exists would be lost.
            await client.subscribe([(self._command_topic, 1), (self._stored_topic, 1)])
            await client.publish(birth.topic, birth.payload, qos=1, retain=birth.retain)
            self._client = client
            self.connected = True
            self._up.set()
            self.connects += 1
            log.info(
                "connected client_id=%s url=%s backlog=%d",
                self.config.client_id,
                redact_url(self.config.url),
                len(self._outbox),
            )
            self._outbox.rewind()  # what the broker took before may be lost with it: sent again until a receipt
            replay = _Replay(len(self._outbox) + self._outbox.unconfirmed)
            try:
                await self._serve(client, replay)
            except asyncio.CancelledError:  # a clean stop: the DISCONNECT makes the broker drop the will
                await self._say_offline(client, will)
                raise
            finally:
                replay.interrupted(self.config.client_id, len(self._outbox))
                self.connected = False
                self._up.clear()
                self._client = None

    async def _serve(self, client: aiomqtt.Client, replay: _Replay) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._drain(client, replay))
                group.create_task(self._receive(client))
        except* aiomqtt.MqttError as errors:
            log.warning(
                "connection lost client_id=%s error=%r action=reconnecting; buffering in the outbox",
                self.config.client_id,
                errors.exceptions[0],
            )

    async def _say_offline(self, client: aiomqtt.Client, will: Publication) -> None:
        """Publish the will ourselves (same boot, next seq after the birth), so the node shows offline at once."""
        try:
            async with asyncio.timeout(OFFLINE_TIMEOUT_S):
                await client.publish(will.topic, will.payload, qos=1, retain=will.retain)
        except (aiomqtt.MqttError, TimeoutError) as exc:
            log.warning(
                "offline status not sent client_id=%s error=%r action=none: the node shows stale, then offline",
                self.config.client_id,
                exc,
            )
        else:
            log.info("offline status published client_id=%s", self.config.client_id)

    async def _drain(self, client: aiomqtt.Client, replay: _Replay) -> None:
        while True:
            items = self._outbox.peek(self.config.window, sending=True)
            if not items:  # everything held went to the broker on this connection (some may wait for a receipt)
                self._wake.clear()
                replay.done(self.config.client_id)
                await self._wake.wait()
                continue
            await asyncio.gather(*(client.publish(i.topic, i.payload, qos=i.qos, retain=i.retain) for i in items))
            self._outbox.ack(i.id for i in items)
            replay.sent(items[0].id, items[-1].id, len(items))
            if len(items) == self.config.window:
                # A backlog (replay after a partition): pace it so a whole site doesn't flood the broker.
                await asyncio.sleep(len(items) / self.config.replay_rate_per_s)

    async def _receive(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            payload = message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
            if message.topic.value == self._stored_topic:
                self._receipt(payload)
            else:
                self._on_command(str(message.topic), payload)

    def _receipt(self, payload: bytes) -> None:
        """A delivery receipt: the outbox forgets what it covers."""
        try:
            _, receipt = decode_message(self._stored_topic, payload)
        except PayloadError as exc:
            log.warning(
                "delivery receipt refused client_id=%s reason=%s detail=%s action=check the controller's version; "
                "the items it meant stay in the outbox and are sent again on the next connection",
                self.config.client_id,
                exc.reason.value,
                exc.detail,
            )
            return
        if isinstance(receipt, StoredReceipt):
            self._outbox.confirm(receipt.boot_id, receipt.ranges)
