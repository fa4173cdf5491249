"""What an integrator meets first: plain errors for bad JSON, and API docs that work with no internet."""

import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.controller.reservations.test_reservations_live import body, start
from tests.harness.controller_runner import ControllerFactory

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium")


def test_bad_json_gets_400_with_a_plain_message_and_a_schema_error_stays_422(
    start_controller: ControllerFactory, tmp_path: Path
) -> None:
    controller, key, _ = start(start_controller, tmp_path)
    headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": "j1", "Content-Type": "application/json"}
    broken = controller.http.post("/v1/reservations", content=b'{"site": "centre",\n "size": S}', headers=headers)
    assert broken.status_code == 400
    assert broken.json() == {"detail": "request body is not valid JSON: Expecting value at line 2, column 10"}
    operator_open = controller.http.post(
        "/v1/nodes/sim-0000/compartments/A1/open",
        content=b"{timeout_s: 5}",
        headers={"Content-Type": "application/json"},
    )
    assert operator_open.status_code == 400
    assert operator_open.json()["detail"].startswith("request body is not valid JSON: Expecting property name")

    no_size = {k: v for k, v in body("P1").items() if k != "size"}
    schema = controller.http.post("/v1/reservations", json=no_size, headers=headers)
    assert schema.status_code == 422 and schema.json()["detail"] == "invalid request: body.size: Field required"
    bad_size = controller.http.post("/v1/reservations", json=body("P1", size="XXL"), headers=headers)
    assert bad_size.status_code == 422 and "'S', 'M', 'L' or 'XL'" in bad_size.json()["detail"]


def test_the_openapi_document_states_the_value_formats(start_controller: ControllerFactory, tmp_path: Path) -> None:
    controller, _, _ = start(start_controller, tmp_path)
    document = controller.http.get("/openapi.json").json()
    fields = document["components"]["schemas"]["ReservationRequest"]["properties"]
    assert "`S`, `M`, `L` or `XL`" in fields["size"]["description"]
    assert "0 normal" in fields["priority"]["description"]
    assert "time zone" in fields["expected_arrival"]["description"]
    opens = document["paths"]["/v1/reservations/{reservation_id}/open"]["post"]["parameters"]
    assert any(p["name"] == "idempotency-key" and p["in"] == "header" and p["required"] for p in opens)


def test_the_docs_pages_load_every_script_and_style_from_the_controller(
    start_controller: ControllerFactory, tmp_path: Path
) -> None:
    controller, _, _ = start(start_controller, tmp_path)
    for page in ("/docs", "/redoc"):
        html = controller.http.get(page)
        assert html.status_code == 200
        urls = re.findall(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""", html.text)
        assert urls, html.text
        assert [u for u in urls if urlsplit(u).netloc] == [], f"{page} loads from another host"
        for url in urls:
            assert controller.http.get(url).status_code == 200, url


def test_swagger_ui_renders_the_api_in_a_browser_with_no_internet(
    start_controller: ControllerFactory, tmp_path: Path
) -> None:
    assert CHROMIUM is not None, "this test needs Debian's chromium: apt-get install chromium (make test-tools)"
    controller, _, _ = start(start_controller, tmp_path)
    rendered = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'chromium'}",
            # Every host but the controller's resolves nowhere: a page needing the internet renders blank.
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            "--virtual-time-budget=15000",
            "--dump-dom",
            f"{controller.url}/docs",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert "/v1/reservations/{reservation_id}/open" in rendered  # Swagger UI drew the operations
    assert "PartnerKey" in rendered or "Authorize" in rendered
