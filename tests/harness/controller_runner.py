"""Run a real controller (uvicorn + :class:`~controller.service.Controller`) in a thread of the test process."""

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from controller.devstack.services import free_port
from controller.server import build_server
from controller.service import Controller
from controller.settings import ControllerSettings
from tests.harness.mqtt import wait_until


class ControllerThread:
    """A controller serving HTTP on a free port; :attr:`http` is a client bound to it with an operator key.

    Requests that pass their own ``Authorization`` header (a courier partner's key) replace the operator's.
    """

    def __init__(self, mqtt_url: str, influx_url: str, influx_db: str, store_path: Path, **settings: Any) -> None:
        self.settings = ControllerSettings(
            mqtt_url=mqtt_url,
            influx_url=influx_url,
            influx_db=influx_db,
            store_path=store_path,
            http_port=free_port(),
            **({"webhook_allow_private": True} | settings),  # the tests' webhook receivers listen on 127.0.0.1
        )
        self.controller = Controller(self.settings)
        self.operator_key = self.controller.operators.create_key("tests", datetime.now(UTC))
        self.server = build_server(self.settings, self.controller)
        self._thread = threading.Thread(target=self.server.run, name="controller", daemon=True)
        self.url = f"http://127.0.0.1:{self.settings.http_port}"
        self.http = httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.operator_key}"}, timeout=30.0
        )

    def start(self) -> "ControllerThread":
        """Start serving; return once the API answers and the broker session is up."""
        self._thread.start()
        if not wait_until(lambda: self.server.started, 30):
            raise AssertionError("controller did not start; see the log above")
        return self

    def stop(self) -> None:
        """Shut down (writing what is buffered) and wait for the thread."""
        self.server.should_exit = True
        self._thread.join(30)
        self.http.close()


ControllerFactory = Callable[..., "ControllerThread"]
"""The ``start_controller`` fixture: start a controller on the test's broker and database (settings as keywords)."""
