"""Readiness of a controller: serving, degraded (InfluxDB or telemetry behind; opens still work) or not ready.

Pure: the controller passes what it measured. Liveness is a separate question (its threads run); an InfluxDB
outage of any length leaves a controller ready, since opens, reservations and liveness no longer wait for it.
"""

from dataclasses import dataclass
from enum import StrEnum


class Readiness(StrEnum):
    """What ``/readyz`` answers."""

    SERVING = "serving"
    DEGRADED = "degraded"
    """Serving opens and reservations; telemetry or InfluxDB points wait (200: keep sending it traffic)."""
    NOT_READY = "not_ready"
    """Opens cannot work: a broker connection of the control path is down (503)."""


@dataclass(frozen=True, slots=True)
class Health:
    """One assessment, as ``/readyz`` and ``/healthz`` show it."""

    readiness: Readiness
    detail: str
    influx_unreachable_s: float | None
    messages_waiting: int
    oldest_unstored_s: float


def assess(
    *,
    control_up: bool,
    commands_up: bool,
    telemetry_up: bool,
    influx_unreachable_s: float | None,
    messages_waiting: int,
    oldest_unstored_s: float,
) -> Health:
    """Readiness from the connections' state and what waits for InfluxDB."""
    problems = []
    if not control_up:
        problems.append("control session to the broker down")
    if not commands_up:
        problems.append("command publisher's broker connection down")
    if problems:
        readiness = Readiness.NOT_READY
    else:
        if not telemetry_up:
            problems.append("telemetry session to the broker down")
        if influx_unreachable_s is not None:
            problems.append(f"InfluxDB unreachable for {influx_unreachable_s:.0f} s")
        readiness = Readiness.DEGRADED if problems else Readiness.SERVING
    detail = readiness.value
    if problems:
        detail += f": {', '.join(problems)}, {messages_waiting} messages waiting"
    return Health(readiness, detail, influx_unreachable_s, messages_waiting, oldest_unstored_s)
