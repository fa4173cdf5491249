"""Reservation decisions under a flash crowd: 1,000 concurrent requests for one site's compartments.

A private mosquitto and influxd, one `lockerfleet controller` process (sites file, reservation store in SQLite),
one `lockerfleet sim` with N nodes at the site (8 compartments each). 1,000 `POST /v1/reservations` are fired
from 50 client threads at once, each with its own Idempotency-Key. Measured: the server's decision latency per
request (lock held, allocation, store writes, command publish: the `reservation` points in InfluxDB), the
client's end-to-end latency, and decisions per second. Reference in the same run: `GET /healthz` fired the same
way (the HTTP stack with no decision), so the ratio isolates what deciding costs.

    python -m benchmarks.contention --nodes 100
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from benchmarks.ingest import start_controllers
from benchmarks.open_rtt import percentile
from controller.devstack.services import Influxd, Mosquitto
from controller.store.reservations import ReservationStore

REQUESTS = 1000
THREADS = 50


Call = tuple[str, str, dict[str, str], dict[str, object] | None]
"""Method, path, headers and JSON body of one request."""


def fire(url: str, calls: list[Call]) -> tuple[list[float], float]:
    """Run ``calls`` (method, path, headers, json) from THREADS threads; per-call seconds and the wall time."""

    limits = httpx.Limits(max_connections=THREADS, max_keepalive_connections=THREADS)
    with httpx.Client(base_url=url, timeout=120, limits=limits) as http:  # shared: one connection per thread

        def one(call: Call) -> float:
            method, path, headers, body = call
            started = time.perf_counter()
            http.request(method, path, headers=headers, json=body)
            return time.perf_counter() - started

        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=THREADS) as pool:
            latencies = list(pool.map(one, calls))
        return latencies, time.perf_counter() - started


def main() -> None:
    """Run the flash crowd and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, Mosquitto(Path(tmp) / "mq") as broker, Influxd(Path(tmp) / "ix") as ix:
        sites = Path(tmp) / "sites.json"
        sites.write_text(json.dumps([{"site_id": "centre", "lat": 52.52, "lon": 13.405}]))
        store_url = f"sqlite:///{tmp}/reservations.sqlite3"
        store = ReservationStore(store_url)
        # The one bench partner may take the whole site (no per-partner quota): the crowd contends for all of it.
        key = store.create_api_key("bench", {"centre"}, datetime.now(UTC), quota_per_site=REQUESTS)
        store.close()
        [(controller, api)] = start_controllers(
            1,
            broker,
            ix,
            tmp,
            reservations_url=store_url,
            sites_file=str(sites),
            courier_rate_per_min="1000000",
            courier_burst="100000",
        )
        url = str(api.base_url).rstrip("/")
        cli = [sys.executable, "-c", "from controller.cli import main; raise SystemExit(main())"]
        sim = subprocess.Popen(
            [
                *cli,
                "sim",
                f"--nodes={args.nodes}",
                f"--mqtt-url={broker.url}",
                f"--data-dir={Path(tmp) / 'sim'}",
                "--telemetry-interval-s=30",
                "--ramp-s=10",
                '--sites=["centre"]',
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 90
            while True:
                try:
                    nodes = api.get("/v1/nodes", timeout=5).json()
                    if len(nodes) == args.nodes and all(n["telemetry"] and n["state"] == "online" for n in nodes):
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    sys.exit(f"the fleet did not come online; log in {tmp}")
                time.sleep(0.5)
            reference, reference_wall = fire(url, [("GET", "/healthz", {}, None)] * REQUESTS)
            arrival = (datetime.now(UTC) + timedelta(minutes=10)).isoformat()
            calls: list[Call] = [
                (
                    "POST",
                    "/v1/reservations",
                    {"Authorization": f"Bearer {key}", "Idempotency-Key": f"bench-{i}"},
                    {"site": "centre", "size": "S", "parcel_ref": f"P{i}", "expected_arrival": arrival},
                )
                for i in range(REQUESTS)
            ]
            client, wall = fire(url, calls)
            time.sleep(1.0)  # the last decision points reach InfluxDB
            rows = httpx.get(
                f"{ix.url}/query",
                params={"db": "bench", "q": 'SELECT latency_ms, "answer" FROM reservation'},
                timeout=30,
            ).json()["results"][0]["series"][0]["values"]
        finally:
            sim.terminate()
            sim.wait(60)
            controller.terminate()
            controller.wait(30)
            api.close()
    decision = [r[1] / 1000 for r in rows]
    granted = sum(1 for r in rows if r[2] == "granted")
    report(args.nodes, decision, client, wall, reference, reference_wall, granted)


def report(
    nodes: int,
    decision: list[float],
    client: list[float],
    wall: float,
    reference: list[float],
    reference_wall: float,
    granted: int,
) -> None:
    """Print the Markdown table for BENCHMARKS.md."""
    ms = 1000.0
    print(
        f"Machine: `{platform.node()}` {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {nodes} nodes ({nodes * 8} compartments) at one site, ")
    print(f"{REQUESTS} requests from {THREADS} threads; {granted} granted, {len(decision) - granted} refused\n")
    print("| figure | p50 (ms) | p99 (ms) | per second | target |")
    print("|---|---|---|---|---|")
    print(
        f"| decision (server, per request) | {percentile(decision, 50) * ms:.2f} | {percentile(decision, 99) * ms:.2f} "
        f"| {len(decision) / sum(decision):,.0f} (serial capacity) | p99 <= 50 ms |"
    )
    print(
        f"| POST /v1/reservations, client end to end | {percentile(client, 50) * ms:.1f} | "
        f"{percentile(client, 99) * ms:.1f} | {REQUESTS / wall:,.0f} | |"
    )
    print(
        f"| GET /healthz, same concurrency (reference) | {percentile(reference, 50) * ms:.1f} | "
        f"{percentile(reference, 99) * ms:.1f} | {REQUESTS / reference_wall:,.0f} | |"
    )
    ratio = percentile(client, 99) / percentile(reference, 99)
    print(f"| client p99 ratio to the reference | | {ratio:.2f}x | | |")


if __name__ == "__main__":
    main()
