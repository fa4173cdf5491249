"""Ingest at broker speed: telemetry validated and stored by the controller, against ``mosquitto_sub`` (C).

A private mosquitto and influxd; one `lockerfleet controller` process (or several sharing the load through an
MQTT 5 shared subscription); `mosquitto_sub` (the C client) reading the same topics in the same run as the
reference. `mosquitto_pub -l` processes (one per simulated node, QoS 1) publish N distinct telemetry messages
(8 compartments each). Two modes:

``--mode flood`` (live): both consumers are subscribed while the publishers run. Each consumer's rate is
N / (time from the first publish to its last message handled); for the controller, "handled" means stored in
InfluxDB and acknowledged.

``--mode backlog`` (a restart after an outage): the consumers' persistent sessions exist but they are offline while
the broker queues all N messages; then the reference drains its queue alone, then the controller(s) start and drain
theirs. Each rate is the messages handled between its first stored (received) one and its last, over that time.
The controller's CPU is counted from its process start (start-up included) and over the drain alone.

Either way the stored count is then checked in InfluxDB (0 lost) and the ingested count at the controller
(none handled twice).

    python -m benchmarks.ingest --messages 300000 [--mode backlog] [--controllers 2] [--tls]

With ``--tls`` both consumers (controller and reference) read from a TLS listener of the same broker (a
throwaway CA made with openssl), while the publishers keep the plain one.
"""

import argparse
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from benchmarks._proc import usage
from controller.devstack.pki import LocalPki
from controller.devstack.services import Influxd, Mosquitto, free_port
from controller.settings import reservations_sqlite_url
from controller.store.operators import issue_operator_key
from schemas import (
    Battery,
    Channel,
    CompartmentReading,
    DoorState,
    LockState,
    PowerSource,
    Telemetry,
    encode,
    fleet_filter,
    topic,
)


def flood(node_id: str, count: int, start: datetime) -> bytes:
    """``count`` distinct telemetry payloads of one node, one per line, 0.1 ms apart from ``start``."""
    compartments = [
        CompartmentReading(id=f"{row}{col}", door=DoorState.CLOSED, lock=LockState.LOCKED)
        for row in "ABC"
        for col in "123"
    ][:8]
    lines = []
    for seq in range(count):
        message = Telemetry(
            node_id=node_id,
            boot_id=1,
            seq=seq,
            ts=start + timedelta(microseconds=100 * seq),
            battery=Battery(
                soc_pct=50 + seq % 50, voltage_v=12.4, charging=False, power_source=PowerSource.BATTERY, cycle_count=7
            ),
            enclosure_temp_c=20.0 + seq % 10,
            compartments=compartments,
        )
        lines.append(encode(message))
    return b"\n".join(lines) + b"\n"


def ingested(http: httpx.Client) -> tuple[float, float]:
    """(telemetry ingested, messages buffered) from one controller's /metrics."""
    text = http.get("/metrics").text
    done = re.search(r'^lockerfleet_messages_ingested_total\{kind="telemetry"\} (\S+)$', text, re.M)
    waiting = re.search(r"^lockerfleet_ingest_buffer_messages (\S+)$", text, re.M)
    return float(done.group(1)) if done else 0.0, float(waiting.group(1)) if waiting else -1.0


def start_controllers(
    count: int, broker: Mosquitto, influx: Influxd, tmp: str, **settings: str
) -> list[tuple[subprocess.Popen[bytes], httpx.Client]]:
    """``count`` controller processes (sharing telemetry through a shared subscription when more than one).

    Each client carries an operator key of its controller (the ``/v1/nodes`` API needs one).

    ``settings`` are more ``LOCKERFLEET_*`` variables, by setting name (``sites_file="…"``).
    """
    controllers = spawn_controllers(count, broker, influx, tmp, **settings)
    for proc, http in controllers:
        deadline = time.monotonic() + 30
        while not _healthy(http):
            if time.monotonic() > deadline or proc.poll() is not None:
                sys.exit(f"controller did not start; log in {tmp}")
            time.sleep(0.1)
    return controllers


def spawn_controllers(
    count: int, broker: Mosquitto, influx: Influxd, tmp: str, **settings: str
) -> list[tuple[subprocess.Popen[bytes], httpx.Client]]:
    """Start ``count`` controller processes (see :func:`start_controllers`) without waiting for them."""
    controllers = []
    for c in range(count):
        port = free_port()
        store_path = Path(tmp, f"store-{c}.sqlite3")
        store_url = settings.get("reservations_url") or reservations_sqlite_url(store_path)
        operator_key = issue_operator_key(store_url, "bench")
        env = dict(
            os.environ,
            LOCKERFLEET_MQTT_URL=broker.url,
            LOCKERFLEET_INFLUX_URL=influx.url,
            LOCKERFLEET_INFLUX_DB="bench",
            LOCKERFLEET_HTTP_PORT=str(port),
            LOCKERFLEET_STORE_PATH=str(store_path),
            LOCKERFLEET_CLIENT_ID=f"bench-controller-{c}",
            # Compiled bytecode kept between starts, as an installed package (and the image) has it: a checkout
            # run with PYTHONDONTWRITEBYTECODE would compile the project's sources at every start.
            PYTHONPYCACHEPREFIX=str(Path(tmp, "pycache")),
        )
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env |= {f"LOCKERFLEET_{name.upper()}": value for name, value in settings.items()}
        if count > 1:
            env["LOCKERFLEET_SHARE_GROUP"] = "bench"
        with Path(tmp, f"controller-{c}.log").open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-c", "from controller.cli import main; raise SystemExit(main(['controller']))"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        headers = {"Authorization": f"Bearer {operator_key}"}
        controllers.append((proc, httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=10)))
    return controllers


def _healthy(http: httpx.Client) -> bool:
    try:
        return http.get("/healthz").status_code == 200
    except httpx.TransportError:
        return False


def publish(broker: Mosquitto, payloads: list[bytes], inflight: int) -> list[subprocess.Popen[bytes]]:
    """One ``mosquitto_pub -l`` per node, fed its payloads; stdin stays open (see :func:`main`)."""
    pubs = []
    for p, data in enumerate(payloads):
        argv = ["mosquitto_pub", "-p", str(broker.port), "-q", "1", "-M", str(inflight), "-l"]
        pub = subprocess.Popen([*argv, "-t", topic(f"bench-{p}", Channel.TELEMETRY)], stdin=subprocess.PIPE)
        assert pub.stdin is not None
        pub.stdin.write(data)
        pub.stdin.flush()
        pubs.append(pub)
    return pubs


def main() -> None:
    """Run the flood and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=300_000)
    parser.add_argument("--publishers", type=int, default=4, help="mosquitto_pub processes (one node each)")
    parser.add_argument("--controllers", type=int, default=1, help="controller processes sharing the load")
    parser.add_argument("--inflight", type=int, default=1000, help="mosquitto_pub -M (QoS 1 window)")
    parser.add_argument("--tls", action="store_true", help="consumers read over TLS (mqtts://)")
    parser.add_argument(
        "--mode", choices=("flood", "backlog"), default="flood", help="live flood, or drain a queued backlog"
    )
    parser.add_argument(
        "--py-spy",
        type=Path,
        metavar="FILE",
        help="backlog mode: record the (first) controller's drain with py-spy into FILE (collapsed stacks, GIL only)",
    )
    args = parser.parse_args()
    per_pub = args.messages // args.publishers
    total = per_pub * args.publishers
    # Recent device times, 0.1 ms apart, ending now: as nodes would send them (old ones would raise clock_skew).
    start = datetime.now(UTC) - timedelta(microseconds=100 * per_pub)
    payloads = [flood(f"bench-{p}", per_pub, start) for p in range(args.publishers)]
    with tempfile.TemporaryDirectory() as tmp:
        consumer_port, tls_config, consumer_tls, sub_tls = None, "", {}, []
        if args.tls:
            pki = LocalPki(Path(tmp) / "pki")
            cert, key = pki.issue("broker", server=True)
            consumer_port = free_port()
            tls_config = f"listener {consumer_port} 127.0.0.1\ncafile {pki.ca_cert}\ncertfile {cert}\nkeyfile {key}"
            consumer_tls = {"mqtt_url": f"mqtts://127.0.0.1:{consumer_port}", "mqtt_ca_file": str(pki.ca_cert)}
            sub_tls = ["--cafile", str(pki.ca_cert)]
        broker_config = f"{tls_config}\nsys_interval 1"  # $SYS counts tell when the backlog is queued
        with Mosquitto(Path(tmp) / "mq", extra_config=broker_config) as broker, Influxd(Path(tmp) / "ix") as ix:
            port = consumer_port or broker.port
            if args.mode == "backlog":
                _backlog(args, payloads, total, broker, ix, tmp, port, consumer_tls, sub_tls)
            else:
                _run(args, payloads, total, broker, ix, tmp, port, consumer_tls, sub_tls)


def _run(
    args: argparse.Namespace,
    payloads: list[bytes],
    total: int,
    broker: Mosquitto,
    ix: Influxd,
    tmp: str,
    consumer_port: int,
    consumer_tls: dict[str, str],
    sub_tls: list[str],
) -> None:
    """Flood ``broker`` and measure the controller(s) and the reference reading from ``consumer_port``."""
    controllers = start_controllers(args.controllers, broker, ix, tmp, **consumer_tls)
    port = str(consumer_port)
    reference = ["mosquitto_sub", "-h", "127.0.0.1", "-p", port, *sub_tls, "-q", "1"]
    reference += ["-t", fleet_filter(Channel.TELEMETRY)]
    sub = subprocess.Popen([*reference, "-C", str(total)], stdout=subprocess.DEVNULL)
    time.sleep(1.0)
    cpu0 = [usage(proc.pid).cpu_s for proc, _ in controllers]
    t0 = time.perf_counter()
    pubs = publish(broker, payloads, args.inflight)
    # mosquitto_pub -l drops what is still queued when its input ends: keep stdin open until all is delivered.
    t_sub = t_ctrl = None
    while t_ctrl is None or t_sub is None:
        now = time.perf_counter()
        if t_sub is None and sub.poll() is not None:
            t_sub = now - t0
        if t_ctrl is None:
            states = [ingested(http) for _, http in controllers]
            if sum(done for done, _ in states) >= total and all(waiting == 0 for _, waiting in states):
                t_ctrl = now - t0
        if now - t0 > 900:
            sys.exit("timed out after 900 s")
        time.sleep(0.05)
    cpu = sum(usage(proc.pid).cpu_s - before for (proc, _), before in zip(controllers, cpu0, strict=True))
    for pub in pubs:
        assert pub.stdin is not None
        pub.stdin.close()
        pub.wait()
    query = {"db": "bench", "q": 'SELECT count("seq") FROM "telemetry"'}
    stored = httpx.get(f"{ix.url}/query", params=query, timeout=120).json()["results"][0]["series"][0]["values"]
    slow_writes = 0.0
    for proc, http in controllers:
        text = http.get("/metrics").text
        within = re.search(r'^lockerfleet_influx_write_seconds_bucket\{le="1.0"\} (\S+)$', text, re.M)
        count = re.search(r"^lockerfleet_influx_write_seconds_count (\S+)$", text, re.M)
        if within and count:
            slow_writes += float(count.group(1)) - float(within.group(1))
        http.close()
        proc.terminate()
        proc.wait(30)
    _warnings(tmp)
    report(args, total, stored[0][1], total / t_ctrl, total / t_sub, cpu)
    print(f"| InfluxDB writes slower than 1 s | {slow_writes:.0f} | | | |")


@dataclass
class Drain:
    """One consumer draining the backlog: when it stored its first and last message, and how many were between."""

    first_s: float = 0.0
    last_s: float = 0.0
    first_count: int = 0
    count: int = 0

    @property
    def rate(self) -> float:
        """Messages per second from the first stored to the last."""
        return (self.count - self.first_count) / (self.last_s - self.first_s)


def queued(broker: Mosquitto) -> int:
    """PUBLISH packets the broker has received so far (its ``$SYS`` counter, updated every second)."""
    argv = ["mosquitto_sub", "-p", str(broker.port), "-C", "1", "-W", "5"]
    out = subprocess.run([*argv, "-t", "$SYS/broker/publish/messages/received"], capture_output=True, check=False)
    return int(out.stdout or 0)


def _drain_reference(argv: list[str], total: int) -> Drain:
    """Run ``mosquitto_sub`` (one byte per message on stdout) until it has ``total``; time first to last byte."""
    drain = Drain()
    sub = subprocess.Popen([*argv, "-C", str(total), "-F", ".", "-N"], stdout=subprocess.PIPE)
    assert sub.stdout is not None
    while chunk := os.read(sub.stdout.fileno(), 1 << 16):
        if not drain.count:
            drain.first_s, drain.first_count = time.perf_counter(), 1
        drain.count += len(chunk)
    drain.last_s = time.perf_counter()
    sub.wait()
    return drain


def _queue_backlog(broker: Mosquitto, payloads: list[bytes], total: int, inflight: int) -> None:
    """Publish ``total`` messages and wait until the broker has received every one."""
    before = queued(broker)
    pubs = publish(broker, payloads, inflight)
    t0 = time.perf_counter()
    while queued(broker) - before < total:  # mosquitto_pub -l drops what it holds at end of input: wait
        if time.perf_counter() - t0 > 900:
            sys.exit("the broker did not receive the backlog within 900 s")
        time.sleep(0.5)
    print(f"backlog of {total:,} queued in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    for pub in pubs:
        assert pub.stdin is not None
        pub.stdin.close()
        pub.wait()


def _drain_controllers(
    controllers: list[tuple[subprocess.Popen[bytes], httpx.Client]], total: int
) -> tuple[Drain, float]:
    """Poll the controllers' /metrics until all ``total`` are stored and acknowledged; (drain, CPU s at first)."""
    drain, cpu_first, t0 = Drain(), 0.0, time.perf_counter()
    while True:
        now = time.perf_counter()
        if now - t0 > 900:
            sys.exit("timed out after 900 s")
        try:
            states = [ingested(http) for _, http in controllers]
        except httpx.TransportError:  # still starting
            time.sleep(0.01)
            continue
        done = int(sum(d for d, _ in states))
        stored = done - int(sum(max(w, 0) for _, w in states))
        if stored and not drain.first_count:
            drain.first_s, drain.first_count = now, stored
            cpu_first = sum(usage(proc.pid).cpu_s for proc, _ in controllers)
        if done >= total and all(w == 0 for _, w in states):
            drain.last_s, drain.count = now, done
            return drain, cpu_first
        time.sleep(0.1)  # each /metrics costs the controller CPU too: poll as little as the timing allows


def _backlog(
    args: argparse.Namespace,
    payloads: list[bytes],
    total: int,
    broker: Mosquitto,
    ix: Influxd,
    tmp: str,
    consumer_port: int,
    consumer_tls: dict[str, str],
    sub_tls: list[str],
) -> None:
    """Queue ``total`` messages for offline consumers, then let each drain its queue alone."""
    for proc, http in start_controllers(args.controllers, broker, ix, tmp, **consumer_tls):  # their sessions
        http.close()
        proc.terminate()
        proc.wait(30)
    reference = ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(consumer_port), *sub_tls, "-q", "1", "-c"]
    reference += ["-i", "bench-reference", "-t", fleet_filter(Channel.TELEMETRY)]
    subprocess.run([*reference, "-E"], check=True)  # a persistent session, then offline
    _queue_backlog(broker, payloads, total, args.inflight)
    ref = _drain_reference(reference, total)
    if ref.count != total:
        sys.exit(f"mosquitto_sub drained {ref.count} of {total}")
    spawned = time.perf_counter()
    controllers = spawn_controllers(args.controllers, broker, ix, tmp, **consumer_tls)
    spy = None
    if args.py_spy:
        argv = [
            str(Path(sys.executable).with_name("py-spy")),
            "record",
            "--nonblocking",
            "--gil",  # only the thread holding the GIL: where the process's Python CPU goes (waits left out)
            "--threads",
            "--format",
            "raw",
            "--rate",
            "200",
        ]
        spy = subprocess.Popen([*argv, "-o", str(args.py_spy), "--pid", str(controllers[0][0].pid)])
    ctrl, cpu_first = _drain_controllers(controllers, total)
    cpu = sum(usage(proc.pid).cpu_s for proc, _ in controllers)
    kernel = sum(usage(proc.pid).system_s for proc, _ in controllers)
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        spy.wait(30)
    query = {"db": "bench", "q": 'SELECT count("seq") FROM "telemetry"'}
    stored = httpx.get(f"{ix.url}/query", params=query, timeout=120).json()["results"][0]["series"][0]["values"][0][1]
    for proc, http in controllers:
        http.close()
        proc.terminate()
        proc.wait(30)
    _warnings(tmp)
    print(
        f"Machine: `{platform.node()}` {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; load average {os.getloadavg()[0]:.2f} at the end\n")
    over = ", over TLS" if args.tls else ""
    ratio = ctrl.rate / ref.rate
    print("| figure | controller | mosquitto_sub (reference) | ratio |")
    print("|---|---|---|---|")
    print(f"| backlog drained | {total:,} ({args.controllers} process(es){over}) | {ref.count:,}{over} | |")
    print(f"| drain rate, first stored to last (msg/s) | {ctrl.rate:,.0f} | {ref.rate:,.0f} | {ratio:.2f}x |")
    print(f"| drain incl. start-up (msg/s) | {total / (ctrl.last_s - spawned):,.0f} | | |")
    print(f"| messages ingested (handled) | {ctrl.count:,} (twice: {ctrl.count - total}) | | |")
    print(f"| telemetry points in InfluxDB | {stored:,} (lost {total - stored}) | | |")
    print(f"| controller CPU per message, incl. start-up (us) | {cpu / total * 1e6:.1f} | | |")
    print(f"| of which in the kernel (us) | {kernel / total * 1e6:.1f} | | |")
    drained = ctrl.count - ctrl.first_count
    print(f"| controller CPU per message, drain only (us) | {(cpu - cpu_first) / drained * 1e6:.1f} | | |")


def _warnings(tmp: str) -> None:
    """Print the controllers' warnings and errors (to stderr)."""
    for log in sorted(Path(tmp).glob("controller-*.log")):
        for line in log.read_text().splitlines():
            if "level=WARNING" in line or "level=ERROR" in line:
                print(f"{log.name}: {line}", file=sys.stderr)


def report(args: argparse.Namespace, total: int, stored: int, ctrl_rate: float, sub_rate: float, cpu: float) -> None:
    """Print the Markdown table for BENCHMARKS.md."""
    print(
        f"Machine: `{platform.node()}` {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n")
    print("| figure | controller | mosquitto_sub (reference) | ratio | target |")
    print("|---|---|---|---|---|")
    over = ", over TLS" if args.tls else ""
    print(f"| messages | {total:,} ({args.controllers} process(es){over}) | {total:,}{over} | | >= 300,000 |")
    print(f"| rate (msg/s) | {ctrl_rate:,.0f} | {sub_rate:,.0f} | {ctrl_rate / sub_rate:.2f}x | >= 0.9x |")
    print(f"| telemetry points in InfluxDB | {stored:,} (lost {total - stored}) | | | 0 lost |")
    print(f"| controller CPU per message (us) | {cpu / total * 1e6:.1f} | | | |")


if __name__ == "__main__":
    main()
