"""Schemathesis against the running controller's /openapi.json: no request the schema allows gets a 5xx."""

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import Case
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok

from controller.devstack.services import Mosquitto
from schemas import Channel, CompartmentInfo, CompartmentSize, encode, topic
from tests import samples
from tests.harness.controller_runner import ControllerFactory
from tests.harness.mqtt import connect, wait_until

pytestmark = pytest.mark.integration


def test_no_request_the_schema_allows_gets_a_server_error(
    start_controller: ControllerFactory, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    sites = tmp_path / "sites.json"
    sites.write_text(json.dumps([{"site_id": "centre", "lat": 52.5, "lon": 13.4}]))
    controller = start_controller(
        sites_file=sites, courier_rate_per_min=1e6, courier_burst=100_000, open_rate_per_min=1e6, open_timeout_s=1
    )
    key = controller.controller.reservation_store.create_api_key("fuzzer", {"centre"}, datetime.now(UTC))
    partner = {"Authorization": f"Bearer {key}"}
    operator = {"Authorization": f"Bearer {controller.operator_key}"}
    # A node at the site (its birth and telemetry, over the real broker), so reservations get decided and granted.
    compartments = [CompartmentInfo(id=f"C{i}", size=CompartmentSize.M) for i in range(8)]
    birth = samples.birth("fuzz-node").model_copy(update={"site": "centre", "compartments": compartments})
    publisher = connect(mosquitto.url)
    for message in (birth, samples.telemetry("fuzz-node", ts=datetime.now(UTC))):
        channel = Channel.STATUS if message is birth else Channel.TELEMETRY
        publisher.publish(
            topic("fuzz-node", channel), encode(message), qos=1, retain=message is birth
        ).wait_for_publish(5)
    publisher.disconnect()
    assert wait_until(lambda: controller.http.get("/v1/nodes/fuzz-node").status_code == 200, 5)
    loaded = schemathesis.openapi.from_url(f"{controller.url}/openapi.json")
    results = list(loaded.get_all_operations())
    operations = [result.ok() for result in results if isinstance(result, Ok)]
    assert len(operations) == len(results) >= 11  # every operation of the document loads

    for operation in operations:
        headers = operator if operation.path.startswith("/v1/nodes") else partner

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def no_server_error(case: Case[Any]) -> None:
            if isinstance(case.body, dict) and "site" in case.body:
                case.body["site"] = "centre"  # the key's site, so requests reach the decision
            case.call_and_validate(base_url=controller.url, headers=headers, checks=[not_a_server_error])  # noqa: B023

        no_server_error()
