"""``lockerfleet demo``: the whole stack on one machine, a courier open through the HTTP API, progress on the terminal.

Everything is started from this process and lives under ``--run-dir``: a private mosquitto and influxd on their
own ports, the controller (HTTP API, ``/metrics``, InfluxDB ingest) and a simulated fleet whose agents each keep a
journal. The demo opens one compartment as a courier app would, then keeps reporting until Ctrl-C or
``--duration-s``.
"""

import signal
import threading
import time
from datetime import UTC, datetime

import httpx
import uvicorn

from controller.api.app import create_app
from controller.devstack.services import Influxd, Mosquitto, free_port, port_is_free
from controller.service import Controller
from controller.settings import ControllerSettings, DemoSettings
from node_agent.settings import SimSettings
from node_agent.sim.fleet import background_fleet
from schemas.broker import redact_url
from schemas.logs import configure

_DB = "lockerfleet"


def _controller_server(controller: Controller) -> tuple[uvicorn.Server, threading.Thread]:
    settings = controller.settings
    config = uvicorn.Config(
        create_app(controller),
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        access_log=False,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="controller", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the controller did not start; see the log lines above")
        time.sleep(0.05)
    return server, thread


def _telemetry_rows(influx: httpx.Client) -> int:
    response = influx.get("/query", params={"db": _DB, "q": 'SELECT count("seq") FROM "telemetry"'})
    series = response.json()["results"][0].get("series")
    return int(series[0]["values"][0][1]) if series else 0


def _courier_open(api: httpx.Client, node_id: str, compartment: str) -> str:
    started = time.monotonic()
    response = api.post(f"/v1/nodes/{node_id}/compartments/{compartment}/open")
    elapsed_ms = (time.monotonic() - started) * 1000
    body = response.json()
    if response.status_code != 200:
        return f"HTTP {response.status_code}: {body.get('detail')} (command {body.get('command_id')})"
    outcome = body["outcome"]
    return (
        f"{outcome['result']} in {elapsed_ms:.0f} ms over HTTP (relay pulse {outcome['pulse_ms']} ms, "
        f"door switch after {outcome['switch_latency_ms']} ms)"
    )


def run_demo(settings: DemoSettings) -> int:
    """Run the demo until Ctrl-C or ``duration_s``."""
    configure("WARNING")
    run_dir = settings.run_dir.resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    port = settings.http_port if settings.http_port and port_is_free(settings.http_port) else free_port()
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with Mosquitto(run_dir / "mosquitto") as broker, Influxd(run_dir / "influxdb") as influxd:
        print(f"broker      {redact_url(broker.url)}  (config and data: {broker.workdir})", flush=True)
        print(f"influxdb    {redact_url(influxd.url)}  database {_DB!r}  (data: {influxd.workdir})", flush=True)
        controller_settings = ControllerSettings(
            mqtt_url=broker.url,
            influx_url=influxd.url,
            influx_db=_DB,
            http_port=port,
            store_path=run_dir / "controller" / "fleet.sqlite3",
            fleet_snapshot_s=2.0,
        )
        controller = Controller(controller_settings)
        operator_key = controller.operators.create_key("demo", datetime.now(UTC))
        server, thread = _controller_server(controller)
        api_url = f"http://127.0.0.1:{port}"
        print(f"HTTP API    {api_url}/v1/nodes   (OpenAPI: {api_url}/docs, metrics: {api_url}/metrics)", flush=True)
        print(f"            operator key (Authorization: Bearer ...): {operator_key}", flush=True)
        sim = SimSettings(
            nodes=settings.nodes,
            mqtt_url=broker.url,
            data_dir=run_dir / "agents",
            telemetry_interval_s=2.0,
            ramp_s=2.0,
            jam_share=0.0,
        )
        try:
            with (
                background_fleet(sim),
                httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {operator_key}"}, timeout=30) as api,
                httpx.Client(base_url=influxd.url, timeout=10) as influx,
            ):
                print(f"fleet       {settings.nodes} simulated lockers, journals under {sim.data_dir}", flush=True)
                _report(settings, api, influx, stop)
        finally:
            server.should_exit = True
            thread.join(30)
    print("demo stopped", flush=True)
    return 0


def _report(settings: DemoSettings, api: httpx.Client, influx: httpx.Client, stop: threading.Event) -> None:
    started = time.monotonic()
    opened = False
    while not stop.is_set():
        elapsed = time.monotonic() - started
        nodes = api.get("/v1/nodes").json()
        online = sum(1 for n in nodes if n["state"] == "online")
        print(
            f"[{elapsed:5.1f}s] nodes online {online:3d}/{settings.nodes}  "
            f"telemetry rows in InfluxDB {_telemetry_rows(influx)}",
            flush=True,
        )
        if not opened and online == settings.nodes:
            opened = True
            print(f"open        sim-0000/A1 (HTTP API) -> {_courier_open(api, 'sim-0000', 'A1')}", flush=True)
        if settings.duration_s is not None and elapsed >= settings.duration_s:
            return
        stop.wait(2.0)
