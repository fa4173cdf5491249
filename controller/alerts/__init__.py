"""Anomaly alerts: a pure, clock-injected engine and the rules that feed it (issue 11).

Feed :class:`AlertMonitor` with :mod:`~controller.alerts.inputs` records and tick it on a timer; it returns
:class:`Notification` objects to deliver. :func:`parse_rules` reads the rules file; :meth:`AlertMonitor.dump` /
:meth:`AlertMonitor.restore` persist the state so a restart neither forgets an alert nor announces it twice.
"""

from controller.alerts.engine import (
    AlertEngine,
    AlertError,
    AlertNotOpenError,
    UnknownAlertError,
    UnknownSilenceError,
)
from controller.alerts.inputs import (
    BreakerState,
    CompartmentReading,
    DoorEdge,
    DoorOutcome,
    KeypadLockout,
    Liveness,
    NodeInfo,
    TelemetrySample,
)
from controller.alerts.model import (
    AlertRecord,
    AlertState,
    Notification,
    Observation,
    RuleName,
    Severity,
    Silence,
    Transition,
    alert_id,
)
from controller.alerts.monitor import AlertMonitor
from controller.alerts.params import RuleSet
from controller.alerts.rules.battery import BatteryForecast
from controller.alerts.rules_file import RulesConfig, RulesFileError, parse_rules

__all__ = [
    "AlertEngine",
    "AlertError",
    "AlertMonitor",
    "AlertNotOpenError",
    "AlertRecord",
    "AlertState",
    "BatteryForecast",
    "BreakerState",
    "CompartmentReading",
    "DoorEdge",
    "DoorOutcome",
    "KeypadLockout",
    "Liveness",
    "NodeInfo",
    "Notification",
    "Observation",
    "RuleName",
    "RuleSet",
    "RulesConfig",
    "RulesFileError",
    "Severity",
    "Silence",
    "TelemetrySample",
    "Transition",
    "UnknownAlertError",
    "UnknownSilenceError",
    "alert_id",
    "parse_rules",
]
