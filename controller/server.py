"""``lockerfleet controller``: the HTTP server around one :class:`~controller.service.Controller`."""

import gc

import uvicorn

from controller.api.app import create_app
from controller.service import Controller
from controller.settings import ControllerSettings
from schemas.logs import configure


def build_server(settings: ControllerSettings, controller: Controller | None = None) -> uvicorn.Server:
    """A uvicorn server serving the API of ``controller`` (a new one by default); its lifespan runs it."""
    app = create_app(controller or Controller(settings))
    config = uvicorn.Config(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        access_log=False,
        lifespan="on",
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=",".join(settings.trusted_proxies) or None,
    )
    return uvicorn.Server(config)


def run_controller(settings: ControllerSettings) -> int:
    """Run until SIGINT/SIGTERM; returns the process exit code."""
    configure()
    server = build_server(settings)
    # What start-up built (modules, the app, the controller) lives as long as the process: out of the collector's
    # way, so it does not walk it again and again while messages flow (about a tenth of the ingest CPU). `lockerfleet
    # controller` turned the collector off for the start-up; it runs from here on.
    gc.freeze()
    # Each ingested message makes a few short-lived containers (its frame, key, alert sample): with the default
    # threshold (700) the young generation was collected every ~200 messages and the survivors of a batch waiting
    # for InfluxDB walked again in the older ones; 50,000 cut ~6 % of the CPU per message of a backlog drain
    # (BENCHMARKS.md, issue 15). Reference counting still frees everything that is not in a cycle at once.
    gc.set_threshold(50_000, 20, 100)
    gc.enable()
    server.run()
    return 0 if server.started else 1
