"""Over-the-air updates of the agent: a persisted, pure state machine (:mod:`~node_agent.ota.machine`), the
occupancy gate (:mod:`~node_agent.ota.gate`), and the driver that runs them against a platform shim
(:mod:`node_agent.ota.shims`). Wiring for the agent is described in :mod:`node_agent.ota.driver`."""

from node_agent.ota.driver import OtaConfig, OtaDriver, RunOutcome, ota_event
from node_agent.ota.gate import GatePolicy, Occupancy, check_gate
from node_agent.ota.machine import Policy, Progress
from node_agent.ota.shims import Shim, shim_from_name

__all__ = [
    "GatePolicy",
    "Occupancy",
    "OtaConfig",
    "OtaDriver",
    "Policy",
    "Progress",
    "RunOutcome",
    "Shim",
    "check_gate",
    "ota_event",
    "shim_from_name",
]
