"""The engine's node states are the contract's OTA states plus the controller's own ``dispatched``."""

from controller.rollouts import DeferReason, NodeState, RolloutPolicy
from controller.rollouts.states import REPORTED
from schemas.ota import OtaReason, OtaState


def test_every_ota_state_is_a_node_state_with_the_same_value() -> None:
    assert {s.value for s in NodeState} == {s.value for s in OtaState} | {"dispatched"}
    assert {NodeState(s) for s in OtaState} <= set(NodeState)


def test_a_node_may_report_every_ota_state_but_timed_out() -> None:
    assert {s.value for s in REPORTED} == {s.value for s in OtaState} - {"timed_out"}


def test_reason_codes_match_the_contract() -> None:
    assert DeferReason.OUTSIDE_WINDOW.value == OtaReason.OUTSIDE_MAINTENANCE_WINDOW.value
    assert RolloutPolicy().retry_reasons == {OtaReason.DOWNLOAD_FAILED.value, OtaReason.BUSY.value}
