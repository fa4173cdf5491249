"""Per-address limits can't be dodged with a made-up X-Forwarded-For; an absurd open timeout is refused before
anything is spent."""

import httpx
import pytest

from tests.agent_mqtt.helpers import build_hardware, sim_profile
from tests.harness.agent_runner import AgentFactory
from tests.harness.controller_runner import ControllerFactory
from tests.harness.mqtt import wait_until

pytestmark = pytest.mark.integration


def test_a_made_up_forwarded_for_header_does_not_dodge_the_per_address_limit(
    start_controller: ControllerFactory,
) -> None:
    controller = start_controller(failed_auth_per_min=3)  # burst of 1: the second failure from one address is 429
    answers = [
        httpx.get(
            f"{controller.url}/v1/nodes",
            headers={"Authorization": "Bearer lfop_guess", "X-Forwarded-For": f"198.51.100.{n}"},
        ).status_code
        for n in range(1, 6)
    ]
    assert answers[0] == 401 and set(answers[1:]) == {429}


def test_a_trusted_proxy_forwarded_for_is_believed(start_controller: ControllerFactory) -> None:
    controller = start_controller(failed_auth_per_min=3, trusted_proxies=["127.0.0.1"])
    answers = [
        httpx.get(
            f"{controller.url}/v1/nodes",
            headers={"Authorization": "Bearer lfop_guess", "X-Forwarded-For": f"198.51.100.{n}"},
        ).status_code
        for n in range(1, 6)
    ]
    assert set(answers) == {401}  # each client address behind the proxy has its own allowance


@pytest.mark.parametrize("timeout_s", [1e-7, 0, -1, 0.5, 301])
def test_an_open_timeout_outside_one_second_to_five_minutes_is_422_and_spends_no_token(
    start_controller: ControllerFactory, start_agent: AgentFactory, timeout_s: float
) -> None:
    start_agent("node-1", build_hardware(sim_profile(), working_doors=("A1",)))
    controller = start_controller(open_rate_per_min=1, open_burst=1)
    assert wait_until(lambda: controller.http.get("/v1/nodes/node-1").status_code == 200, 10)
    refused = controller.http.post("/v1/nodes/node-1/compartments/A1/open", json={"timeout_s": timeout_s})
    assert refused.status_code == 422 and "timeout_s" in refused.json()["detail"]
    after = controller.http.post("/v1/nodes/node-1/compartments/A1/open")
    assert after.status_code == 200, after.text  # the fleet's only token was still there
