"""``lockerfleet demo``: a local broker and a simulated fleet, one door opened, progress on the terminal.

Everything runs from this process: a private mosquitto on a free port (data under ``--run-dir``), the fleet
simulator's agents, and an observer that counts what reaches the broker. The controller joins when it is built.
"""

import asyncio
import contextlib
import signal
import threading
import time
from datetime import UTC, datetime, timedelta

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from controller.local_services import Mosquitto
from controller.settings import DemoSettings
from node_agent.settings import SimSettings
from node_agent.simulator import Fleet
from schemas import (
    Channel,
    CommandResult,
    CommandStatus,
    OpenCommand,
    PayloadError,
    StatusBirth,
    StatusDeath,
    decode_message,
    encode,
    fleet_filter,
    topic,
)


class Observer:
    """Counts births and telemetry and waits for command results, as an operator's tool would."""

    def __init__(self, url: str) -> None:
        self.online: set[str] = set()
        self.telemetry = 0
        self.rejected = 0
        self.results: dict[str, tuple[float, CommandResult]] = {}
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self._client.on_message = self._on_message
        self._client.connect("127.0.0.1", int(url.rsplit(":", 1)[1]))
        for channel in (Channel.STATUS, Channel.TELEMETRY, Channel.RESULT):
            self._client.subscribe(fleet_filter(channel), qos=1)
        self._client.loop_start()

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        try:
            where, message = decode_message(msg.topic, bytes(msg.payload))
        except PayloadError:
            self.rejected += 1  # counted and shown; a bad payload never stops the demo
            return
        if isinstance(message, StatusBirth):
            self.online.add(where.node_id)
        elif isinstance(message, StatusDeath):
            self.online.discard(where.node_id)
        elif where.channel is Channel.TELEMETRY:
            self.telemetry += 1
        elif isinstance(message, CommandResult) and message.status is not CommandStatus.ACCEPTED:
            self.results[message.command_id] = (time.monotonic(), message)

    def open(self, node_id: str, compartment: str) -> tuple[float, CommandResult] | None:
        """Send an ``open`` and wait up to 10 s for its final result; return (seconds, result)."""
        now = datetime.now(UTC)
        command = OpenCommand(
            command_id=f"demo-{int(now.timestamp())}",
            node_id=node_id,
            issued_at=now,
            expires_at=now + timedelta(seconds=10),
            compartment=compartment,
        )
        sent = time.monotonic()
        self._client.publish(topic(node_id, Channel.COMMAND), encode(command), qos=1)
        while time.monotonic() - sent < 10:
            if command.command_id in self.results:
                at, result = self.results[command.command_id]
                return at - sent, result
            time.sleep(0.01)
        return None

    def close(self) -> None:
        """Disconnect."""
        self._client.disconnect()
        self._client.loop_stop()


def run_demo(settings: DemoSettings) -> int:
    """Run the demo until Ctrl-C or ``duration_s``."""
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    with Mosquitto(settings.run_dir / "mosquitto") as broker:
        print(f"broker     {broker.url}  (config and data: {broker.workdir})", flush=True)
        sim = SimSettings(
            nodes=settings.nodes,
            mqtt_url=broker.url,
            data_dir=settings.run_dir / "agents",
            telemetry_interval_s=2.0,
            ramp_s=2.0,
            jam_share=0.0,
        )
        loop = asyncio.new_event_loop()
        fleet = Fleet(sim, loop.call_later)
        task = loop.create_task(fleet.run())
        thread = threading.Thread(target=_run_loop, args=(loop, task), daemon=True)
        thread.start()
        print(f"fleet      {settings.nodes} simulated lockers, journals under {sim.data_dir}", flush=True)
        observer = Observer(broker.url)
        stop = threading.Event()
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        started = time.monotonic()
        opened = False
        try:
            while not stop.is_set():
                elapsed = time.monotonic() - started
                print(
                    f"[{elapsed:5.1f}s] nodes online {len(observer.online):3d}/{settings.nodes}  "
                    f"telemetry messages {observer.telemetry}  rejected {observer.rejected}",
                    flush=True,
                )
                if not opened and len(observer.online) == settings.nodes:
                    opened = True
                    answer = observer.open("sim-0000", "A1")
                    if answer is None:
                        print("open       sim-0000/A1: no answer within 10 s", flush=True)
                    else:
                        seconds, result = answer
                        outcome = result.outcome.result.value if result.outcome else result.status.value
                        print(
                            f"open       sim-0000/A1 -> {outcome} in {seconds * 1000:.0f} ms "
                            f"(relay pulse {result.outcome.pulse_ms if result.outcome else 0} ms)",
                            flush=True,
                        )
                if settings.duration_s is not None and elapsed >= settings.duration_s:
                    break
                stop.wait(2.0)
        finally:
            observer.close()
            loop.call_soon_threadsafe(task.cancel)
            thread.join(15)
            fleet.close()
    print("demo stopped", flush=True)
    return 0


def _run_loop(loop: asyncio.AbstractEventLoop, task: "asyncio.Task[None]") -> None:
    with contextlib.suppress(asyncio.CancelledError):
        loop.run_until_complete(task)
    loop.close()
