"""``lockerfleet controller``: the HTTP server around one :class:`~controller.service.Controller`."""

import uvicorn

from controller.api.app import create_app
from controller.service import Controller
from controller.settings import ControllerSettings
from schemas.logs import configure


def build_server(settings: ControllerSettings) -> uvicorn.Server:
    """A uvicorn server serving the controller's API; its lifespan runs the controller."""
    app = create_app(Controller(settings))
    config = uvicorn.Config(
        app, host=settings.http_host, port=settings.http_port, log_config=None, access_log=False, lifespan="on"
    )
    return uvicorn.Server(config)


def run_controller(settings: ControllerSettings) -> int:
    """Run until SIGINT/SIGTERM; returns the process exit code."""
    configure()
    server = build_server(settings)
    server.run()
    return 0 if server.started else 1
