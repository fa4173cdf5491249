"""Exact counts for the controller chaos tests: what simulated nodes generated, what InfluxDB holds, and real
``lockerfleet controller`` processes a test can SIGKILL and start again.

A message is identified by (node, boot, seq). :class:`Generated` records every telemetry message the simulated
agents put in their outboxes (the moment it exists on the node); :func:`stored_telemetry` reads every telemetry
point back from InfluxDB. Exactly once means the two agree as multisets: nothing missing, nothing stored twice.
"""

import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from controller.devstack.services import free_port
from controller.store.operators import issue_operator_key
from node_agent.outbox import Outbox
from node_agent.sim.fleet import SimFleet
from schemas import Channel, decode, parse_topic
from tests.harness.influx import InfluxClient
from tests.harness.mqtt import wait_until

Key = tuple[str, int, int]
"""(node, boot id, seq): one message, wherever it is."""


class Generated:
    """Every telemetry message the simulated agents of this process put in their outboxes, in order.

    Installed on :class:`~node_agent.outbox.Outbox` itself before the fleet is built, so no message escapes it.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.keys: list[Key] = []
        self._lock = threading.Lock()
        put = Outbox.put

        def recording_put(outbox: Outbox, topic: str, payload: bytes, **kwargs: Any) -> None:
            put(outbox, topic, payload, **kwargs)
            if parse_topic(topic).channel is Channel.TELEMETRY:
                message = decode(Channel.TELEMETRY, payload)
                with self._lock:
                    self.keys.append((message.node_id, message.boot_id, message.seq))

        monkeypatch.setattr(Outbox, "put", recording_put)

    def __len__(self) -> int:
        with self._lock:
            return len(self.keys)

    def snapshot(self) -> list[Key]:
        """The messages generated so far."""
        with self._lock:
            return list(self.keys)


def stored_telemetry(influx: InfluxClient) -> list[Key]:
    """Every telemetry point in InfluxDB as (node, boot, seq), one entry per stored point."""
    rows = influx.query('SELECT "boot_id", "seq" FROM "telemetry" GROUP BY "node"')
    return [(str(r["node"]), int(r["boot_id"]), int(r["seq"])) for r in rows]


@dataclass(frozen=True)
class Tally:
    """How what was stored compares with what was generated."""

    generated: int
    stored: int
    missing: list[Key]
    twice: list[Key]
    unknown: list[Key]

    @property
    def exact(self) -> bool:
        """Every generated message stored exactly once, and nothing else."""
        return not (self.missing or self.twice or self.unknown)

    def __str__(self) -> str:
        return (
            f"generated={self.generated} stored={self.stored} missing={len(self.missing)} "
            f"twice={len(self.twice)} unknown={len(self.unknown)} first_missing={self.missing[:5]}"
        )


def tally(generated: list[Key], stored: list[Key]) -> Tally:
    """Compare ``stored`` with ``generated`` by (node, boot, seq)."""
    made, kept = Counter(generated), Counter(stored)
    assert all(n == 1 for n in made.values()), "a node generated the same (boot, seq) twice"
    return Tally(
        generated=len(generated),
        stored=len(stored),
        missing=sorted(k for k in made if k not in kept),
        twice=sorted(k for k, n in kept.items() if n > 1),
        unknown=sorted(k for k in kept if k not in made),
    )


def pause_telemetry(fleet: SimFleet, timeout_s: float = 10.0) -> None:
    """Stop every agent's telemetry; returns once the fleet's loop has done it, so no sample comes after.

    Only scheduling the pause left a window: outboxes all empty for a moment, the test's snapshot taken, then one
    more sample generated and stored (seen as ``unknown=1`` once the controller drained fast enough to empty them).
    """
    assert fleet.loop is not None
    paused = threading.Event()

    def pause() -> None:
        for agent in fleet.agents:
            agent.telemetry_paused = True
        paused.set()

    fleet.loop.call_soon_threadsafe(pause)
    assert paused.wait(timeout_s), "the fleet's loop did not run the pause"


def quiesce(fleet: SimFleet, timeout_s: float = 30.0) -> None:
    """Stop every agent's telemetry and wait until each outbox handed everything to the broker."""
    pause_telemetry(fleet)
    emptied = wait_until(lambda: all(len(agent.outbox) == 0 for agent in fleet.agents), timeout_s, 0.1)
    assert emptied, {a.node_id: len(a.outbox) for a in fleet.agents if len(a.outbox)}


@dataclass
class ControllerProcess:
    """A ``lockerfleet controller`` child process, configured by environment; :meth:`kill` is a crash."""

    name: str
    env: dict[str, str]
    log_path: Path
    store_url: str
    proc: subprocess.Popen[bytes] | None = None
    port: int = field(default_factory=free_port)
    operator_key: str = ""

    def start(self) -> "ControllerProcess":
        """Start (again, with the same client id and store); return once both broker sessions are subscribed."""
        if not self.operator_key:
            self.operator_key = issue_operator_key(self.store_url, "chaos")
        env = dict(os.environ, **self.env, LOCKERFLEET_HTTP_PORT=str(self.port))
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", "from controller.cli import main; raise SystemExit(main(['controller']))"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        assert wait_until(lambda: self._status("/healthz") == 200, 60, 0.1), self.log_tail()
        return self

    def kill(self) -> None:
        """SIGKILL, as a crash or the OOM killer would: nothing is flushed, nothing acknowledged."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM if still running (SIGKILL past 10 s)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def get(self, path: str) -> httpx.Response:
        """A GET with the operator key."""
        headers = {"Authorization": f"Bearer {self.operator_key}"}
        return httpx.get(f"http://127.0.0.1:{self.port}{path}", headers=headers, timeout=10)

    def metric(self, name: str, label: str = "") -> float:
        """Sum of the samples of ``name`` (e.g. ``lockerfleet_messages_ingested_total``) from ``/metrics``, of every
        label set, or of those containing ``label`` (e.g. ``kind="telemetry"``)."""
        total = 0.0
        for line in self.get("/metrics").text.splitlines():
            if line.startswith(name) and line[len(name) : len(name) + 1] in (" ", "{") and label in line:
                total += float(line.rsplit(" ", 1)[1])
        return total

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the process's log, for failure messages."""
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else "(no log)"

    def _status(self, path: str) -> int | None:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"controller {self.name} exited with {self.proc.returncode}: {self.log_tail()}")
        try:
            return self.get(path).status_code
        except httpx.TransportError:
            return None


def controller_env(
    mqtt_url: str, influx: InfluxClient, store_path: Path, client_id: str, **settings: str
) -> dict[str, str]:
    """Environment of a chaos test's controller: its broker, database, store and client id, plus ``settings``
    (``batch_max_age_s="0.5"`` → ``LOCKERFLEET_BATCH_MAX_AGE_S=0.5``)."""
    return {
        "LOCKERFLEET_MQTT_URL": mqtt_url,
        "LOCKERFLEET_INFLUX_URL": influx.url,
        "LOCKERFLEET_INFLUX_DB": influx.db,
        "LOCKERFLEET_STORE_PATH": str(store_path),
        "LOCKERFLEET_CLIENT_ID": client_id,
        "LOCKERFLEET_FLEET_SNAPSHOT_S": "1",
        **{f"LOCKERFLEET_{key.upper()}": value for key, value in settings.items()},
    }
