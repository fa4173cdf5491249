"""The README's curl examples, run as a reader would against a live controller and a simulated locker.

Every ``sh`` block of the courier integration section that calls curl is run by bash with the placeholders set
($LOCKERFLEET_URL, $PARTNER_KEY, …); together the blocks must cover every route of the OpenAPI document under
:data:`COVERED` (the courier API, and the node routes an operator uses with it).
"""

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from controller.devstack.services import Mosquitto
from node_agent.sim.fleet import background_fleet
from tests.controller.reservations.test_reservations_live import one_locker, reporting, start
from tests.harness.controller_runner import ControllerFactory
from tests.harness.mqtt import wait_until

pytestmark = pytest.mark.integration

README = Path(__file__).resolve().parent.parent / "README.md"
SECTION = "### Courier integration with curl"
COVERED = ("/v1/reservations", "/v1/nodes")
PLACEHOLDERS = {"$RESERVATION_ID": "{reservation_id}", "$NODE_ID": "{node_id}", "$COMPARTMENT": "{compartment}"}


@dataclass(frozen=True)
class Example:
    """One curl block of the README and the route it calls."""

    script: str
    method: str
    path: str
    """With ``{param}`` for each placeholder, as in the OpenAPI document."""
    step: str = ""
    """For a reservation open: which step."""


def examples() -> dict[tuple[str, str, str], Example]:
    """The section's curl blocks by (method, path, step)."""
    text = README.read_text()
    start_at = text.index(SECTION) + len(SECTION)
    following = re.search(r"^#{1,3} ", text[start_at:], re.MULTILINE)
    section = text[start_at : start_at + following.start() if following else None]
    found: dict[tuple[str, str, str], Example] = {}
    for script in re.findall(r"^```sh\n(.*?)^```$", section, re.MULTILINE | re.DOTALL):
        if "curl " not in script:
            continue
        url = re.search(r'"\$LOCKERFLEET_URL(/[^"?]*)', script)
        assert url is not None, f"a curl example without $LOCKERFLEET_URL:\n{script}"
        path = url.group(1)
        for variable, parameter in PLACEHOLDERS.items():
            path = path.replace(variable, parameter)
        method = re.search(r"-X (\w+)", script)
        step = re.search(r'"step": "(\w+)"', script)
        example = Example(script, method.group(1) if method else "GET", path, step.group(1) if step else "")
        key = (example.method, example.path, example.step)
        assert key not in found, f"two examples of {key}"
        found[key] = example
    return found


def run(example: Example, variables: dict[str, str]) -> Any:
    """Run the block as a reader pastes it; its output is the answer's JSON."""
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", example.script],
        env=os.environ | variables,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"{example.method} {example.path} failed:\n{done.stderr}{done.stdout}"
    return json.loads(done.stdout)


def test_every_curl_example_of_the_readme_works_and_every_route_has_one(
    start_controller: ControllerFactory, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    assert shutil.which("curl"), "the README's examples need curl: apt-get install curl (make services)"
    controller, partner_key, _ = start(start_controller, tmp_path)
    shown = examples()
    routes = {
        (method.upper(), path)
        for path, operations in controller.http.get("/openapi.json").json()["paths"].items()
        if path.startswith(COVERED)
        for method in operations
    }
    assert {(method, path) for method, path, _step in shown} == routes  # every route has an example, and vice versa

    variables = {
        "LOCKERFLEET_URL": controller.url,
        "PARTNER_KEY": partner_key,
        "OPERATOR_KEY": controller.operator_key,
    }

    def call(method: str, path: str, step: str = "") -> Any:
        return run(shown[(method, path, step)], variables)

    def state() -> str:
        return str(call("GET", "/v1/reservations/{reservation_id}")["state"])

    with background_fleet(one_locker(mosquitto, tmp_path)):
        assert wait_until(lambda: reporting(controller), 20)
        assert wait_until(lambda: bool(call("GET", "/v1/nodes")), 10)  # the example lists online ones
        node = call("GET", "/v1/nodes")[0]
        variables |= {"NODE_ID": node["node_id"], "COMPARTMENT": node["compartments"][0]["id"]}
        assert call("GET", "/v1/nodes/{node_id}")["node_id"] == node["node_id"]
        opened = call("POST", "/v1/nodes/{node_id}/compartments/{compartment}/open")
        assert opened["outcome"]["result"] in ("opened", "already_open")
        assert call("PUT", "/v1/nodes/{node_id}/maintenance")["maintenance"]["reason"].startswith("ticket 42")
        assert call("DELETE", "/v1/nodes/{node_id}/maintenance")["maintenance"] is None

        reserve = shown[("POST", "/v1/reservations", "")]
        created = run(reserve, variables)
        assert created["state"] == "pending" and created["parcel_ref"] == "4711" and created["size"] == "M"
        assert run(reserve, variables) == created  # the same Idempotency-Key: the same answer
        variables["RESERVATION_ID"] = created["reservation_id"]
        assert wait_until(lambda: state() == "held", 10)
        deposit = call("POST", "/v1/reservations/{reservation_id}/open", "deposit")
        assert deposit["outcome"]["result"] in ("opened", "already_open")
        assert wait_until(lambda: state() == "deposited", 10)
        assert call("GET", "/v1/reservations/{reservation_id}")["pickup_code"]
        pickup = call("POST", "/v1/reservations/{reservation_id}/open", "pickup")
        assert pickup["outcome"]["result"] in ("opened", "already_open")
        assert pickup["command_id"] != deposit["command_id"]
        assert wait_until(lambda: state() == "picked_up", 10)

        another = Example(reserve.script.replace("PARCEL_REF=4711", "PARCEL_REF=4712"), "POST", "/v1/reservations")
        second = run(another, variables)
        assert second["parcel_ref"] == "4712" and second["reservation_id"] != created["reservation_id"]
        variables["RESERVATION_ID"] = second["reservation_id"]
        assert wait_until(lambda: state() == "held", 10)
        assert call("DELETE", "/v1/reservations/{reservation_id}")["state"] == "held"
        assert wait_until(lambda: state() == "cancelled", 10)
