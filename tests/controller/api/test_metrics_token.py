"""/metrics can be limited to Prometheus' scrape token; without the setting it stays open as before."""

from pathlib import Path

import httpx
import pytest

from tests.harness.controller_runner import ControllerFactory

pytestmark = pytest.mark.integration


def test_metrics_answer_only_the_scrape_token_when_one_is_set(
    start_controller: ControllerFactory, tmp_path: Path
) -> None:
    token_file = tmp_path / "metrics.token"
    token_file.write_text("s3cret-scrape-token\n")
    controller = start_controller(metrics_token_file=token_file)
    url = f"{controller.url}/metrics"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert controller.http.get("/metrics").status_code == 401  # an operator key is not the scrape token
    scraped = httpx.get(url, headers={"Authorization": "Bearer s3cret-scrape-token"})
    assert scraped.status_code == 200 and "lockerfleet_" in scraped.text
    assert httpx.get(f"{controller.url}/healthz").status_code in (200, 503)  # orchestrators' probe stays open


def test_metrics_stay_open_without_a_token_setting(start_controller: ControllerFactory) -> None:
    controller = start_controller()
    assert httpx.get(f"{controller.url}/metrics").status_code == 200
