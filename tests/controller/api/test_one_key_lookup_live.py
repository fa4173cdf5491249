"""Each authenticated request looks its key up once: the guard finds it, the route takes it from the request."""

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.harness.controller_runner import ControllerFactory

pytestmark = pytest.mark.integration


def counting(calls: list[str], name: str, lookup: Callable[[str], Any]) -> Callable[[str], Any]:
    def counted(token: str) -> Any:
        calls.append(name)
        return lookup(token)

    return counted


def test_an_operator_and_a_partner_request_each_look_their_key_up_once(
    start_controller: ControllerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    controller = start_controller()
    core = controller.controller
    partner = core.reservation_store.create_api_key("parcelco", {"centre"}, datetime.now(UTC))
    calls: list[str] = []
    for name, store in (("operator", core.operators), ("partner", core.reservation_store), ("field", core.field_store)):
        monkeypatch.setattr(store, "authenticate", counting(calls, name, store.authenticate))

    assert controller.http.get("/v1/nodes").status_code == 200
    assert calls == ["operator"]  # found at the first store the guard asks, and not again by the route

    calls.clear()
    answer = controller.http.get("/v1/reservations/r-unknown", headers={"Authorization": f"Bearer {partner}"})
    assert answer.status_code == 404
    assert calls == ["operator", "partner"]  # the guard tries operators first; the route asks nothing

    calls.clear()
    assert controller.http.get("/v1/reservations/r-unknown").status_code == 403  # an operator key there
    assert calls == ["operator"]
