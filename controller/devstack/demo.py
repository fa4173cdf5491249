"""``lockerfleet demo``: the whole stack on one machine, a courier partner's walk over HTTP, progress on the terminal.

Everything is started from this process and lives under ``--run-dir``: a private mosquitto and influxd on their
own ports (in their own process group, so the terminal's Ctrl-C reaches only the demo, which stops them in order),
the controller (HTTP API, ``/metrics``, InfluxDB ingest) with the shipped sites file, and a simulated fleet spread
over those sites whose agents each keep a journal. Once the fleet is up, the demo walks one parcel through a
reservation as a courier partner's app would (:mod:`controller.devstack.courier_walk`), and tells the story of one
battery swap: a locker draining fast is forecast empty, its swap alert fires and opens a work order, the pack is
swapped, the alert resolves and the work order is verified (:mod:`controller.devstack.swap_story`). Then it keeps
running for exploration until Ctrl-C or ``--duration-s``. Its API keys are kept in the run directory and reused by
the next run.
"""

import gc
import json
import os
import shutil
import signal
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import uvicorn

from controller.api.app import create_app
from controller.commands.signing import command_signing_key, public_key_line
from controller.devstack.courier_walk import CourierWalk, WalkStoppedError
from controller.devstack.demo_keys import DemoKeys, demo_keys
from controller.devstack.services import Influxd, Mosquitto, free_port, port_is_free
from controller.devstack.swap_story import FAULTS, HEALTHY_FOR_S, RULES, SwapStory
from controller.service import Controller
from controller.settings import ControllerSettings, DemoSettings, reservations_sqlite_url
from node_agent.controller_key import TOFU_FILE
from node_agent.settings import SimSettings
from node_agent.sim.fleet import SimFleet, background_fleet
from schemas.broker import redact_url
from schemas.logs import configure
from schemas.private_files import private_file

_DB = "lockerfleet"
SITES_FILE = Path(__file__).with_name("sites.example.json")
"""The sites the demo fleet stands at (also mounted by compose.yaml)."""
_REPORT_EVERY_S = 2.0
_REPORT_AFTER_WALK_S = 10.0


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


def _say(line: str) -> None:
    print(line, flush=True)


def _path_hint() -> str:
    """How to get ``lockerfleet`` on the PATH, or nothing when it is there."""
    if shutil.which("lockerfleet"):
        return ""
    activate = Path(sys.prefix) / "bin" / "activate"
    shown = os.path.relpath(activate) if activate.is_relative_to(Path.cwd()) else str(activate)
    return f"`lockerfleet` is not on your PATH: `source {shown}` (or `make shell`) puts it there"


def _print_access(api_url: str, keys: DemoKeys, store_path: Path, site: str) -> None:
    """The URLs and keys, once."""
    _say(f"HTTP API    {api_url}   (OpenAPI: {api_url}/docs, metrics: {api_url}/metrics)")
    for label, key, use in (
        ("operator", keys.operator, "/v1/nodes"),
        ("partner", keys.partner, "/v1/reservations"),
    ):
        origin = "kept from an earlier run" if key.reused else "new"
        _say(f"{label:<11} key {key.token}")
        _say(f"            ({use}; id {key.key_id}; {origin}, in {key.path})")
    _say(f'try         curl -H "Authorization: Bearer $(cat {keys.operator.path})" {api_url}/v1/nodes')
    _say(f"admin       lockerfleet keys --store-path {store_path} --partner you --sites '{json.dumps([site])}'")
    if hint := _path_hint():
        _say(f"            {hint}")


def run_demo(settings: DemoSettings) -> int:
    """Run the demo until Ctrl-C or ``duration_s``."""
    configure("WARNING")
    run_dir = settings.run_dir.resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    port = settings.http_port if settings.http_port and port_is_free(settings.http_port) else free_port()
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    sites = [str(s["site_id"]) for s in json.loads(SITES_FILE.read_text())]
    with Mosquitto(run_dir / "mosquitto") as broker, Influxd(run_dir / "influxdb") as influxd:
        _say(f"broker      {redact_url(broker.url)}  (config and data: {broker.workdir})")
        _say(f"influxdb    {redact_url(influxd.url)}  database {_DB!r}  (data: {influxd.workdir})")
        store_path = run_dir / "controller" / "fleet.sqlite3"
        rules_file = run_dir / "alerts.toml"
        rules_file.write_text(RULES)
        keys = demo_keys(reservations_sqlite_url(store_path), run_dir, set(sites), datetime.now(UTC))
        controller = Controller(
            ControllerSettings(
                mqtt_url=broker.url,
                influx_url=influxd.url,
                influx_db=_DB,
                http_port=port,
                store_path=store_path,
                sites_file=SITES_FILE,
                fleet_snapshot_s=2.0,
                alert_rules_file=rules_file,
                field_healthy_for_s=HEALTHY_FOR_S,
            )
        )
        server, thread = _controller_server(controller)
        api_url = f"http://127.0.0.1:{port}"
        _print_access(api_url, keys, store_path, sites[0])
        sim = SimSettings(
            nodes=settings.nodes,
            mqtt_url=broker.url,
            data_dir=run_dir / "agents",
            telemetry_interval_s=2.0,
            ramp_s=2.0,
            jam_share=0.0,
            door_dwell_s=3.0,
            sites=sites[: settings.nodes],
            faults=FAULTS if settings.nodes > 1 else "",
        )
        _pin_controller_key(controller, sim)
        try:
            with (
                background_fleet(sim) as fleet,
                httpx.Client(base_url=api_url, headers=_bearer(keys.operator.token), timeout=30) as api,
                httpx.Client(base_url=influxd.url, timeout=10) as influx,
            ):
                _say(
                    f"fleet       {settings.nodes} simulated lockers at {', '.join(sim.sites)}, journals {sim.data_dir}"
                )
                walk = CourierWalk(api, keys.partner.token, fleet, stop, _say)
                _report(settings, api, influx, fleet, walk, keys, stop)
        except WalkStoppedError:
            pass
        finally:
            server.should_exit = True
            thread.join(30)
    _say("demo stopped")
    gc.freeze()  # everything is stopped and flushed: exit at once instead of collecting every object first
    return 0


def _pin_controller_key(controller: Controller, sim: SimSettings) -> None:
    """Pin the controller's command-signing key in every simulated locker, as an installer would (no trust on
    first use, so no warning per node)."""
    line = public_key_line(command_signing_key(controller.reservation_store.code_secret()))
    for i in range(sim.nodes):
        pinned = sim.data_dir / f"{sim.node_prefix}-{i:04d}" / TOFU_FILE
        if not pinned.exists():
            private_file(pinned)
            pinned.write_text(line + "\n")


def _report(
    settings: DemoSettings,
    api: httpx.Client,
    influx: httpx.Client,
    fleet: SimFleet,
    walk: CourierWalk,
    keys: DemoKeys,
    stop: threading.Event,
) -> None:
    """Print the fleet's progress; once every node is up and reporting, walk the courier flow once; tell the swap
    story as it happens."""
    started = time.monotonic()
    walked = False
    swap = SwapStory(api, fleet, _say)
    while not stop.is_set():
        swap.step()
        elapsed = time.monotonic() - started
        nodes = api.get("/v1/nodes").json()
        online = sum(1 for n in nodes if n["state"] == "online")
        _say(
            f"[{elapsed:5.1f}s] nodes online {online:3d}/{settings.nodes}  "
            f"telemetry rows in InfluxDB {_telemetry_rows(influx)}"
        )
        ready = online == settings.nodes and all(n["telemetry"] for n in nodes)
        if not walked and ready and all(a.keypad is not None for a in fleet.agents):
            walked = True
            site = str(fleet.settings.sites[0])
            _say(f"courier     a partner's app reserves at {site!r}, deposits, and the recipient picks up:")
            done = walk.run(site)
            _say(f"courier     {'walk done' if done else 'walk incomplete'}; the demo keeps running: Ctrl-C stops it")
            if walk.reservation_path:
                _say(
                    f'explore     curl -H "Authorization: Bearer $(cat {keys.partner.path})" '
                    f"{str(api.base_url).rstrip('/')}{walk.reservation_path}"
                )
        wait_s = _REPORT_AFTER_WALK_S if walked and swap.done else _REPORT_EVERY_S
        if settings.duration_s is not None:
            left_s = settings.duration_s - (time.monotonic() - started)
            if left_s <= 0:
                return
            wait_s = min(wait_s, left_s)
        stop.wait(wait_s)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
