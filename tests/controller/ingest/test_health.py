"""Readiness: InfluxDB or telemetry behind is degraded (still ready); a control connection down is not ready."""

from controller.ingest.health import Readiness, assess

UP = {"control_up": True, "commands_up": True, "telemetry_up": True}


def test_all_up_and_influxdb_answering_is_serving() -> None:
    health = assess(**UP, influx_unreachable_s=None, messages_waiting=3, oldest_unstored_s=0.05)
    assert health.readiness is Readiness.SERVING and health.detail == "serving"


def test_influxdb_unreachable_is_degraded_saying_for_how_long_and_what_waits() -> None:
    health = assess(**UP, influx_unreachable_s=42.4, messages_waiting=1234, oldest_unstored_s=43.0)
    assert health.readiness is Readiness.DEGRADED
    assert health.detail == "degraded: InfluxDB unreachable for 42 s, 1234 messages waiting"


def test_the_telemetry_session_down_is_degraded_but_a_control_connection_down_is_not_ready() -> None:
    telemetry_down = assess(
        **UP | {"telemetry_up": False}, influx_unreachable_s=None, messages_waiting=0, oldest_unstored_s=0
    )
    assert telemetry_down.readiness is Readiness.DEGRADED
    for down in ("control_up", "commands_up"):
        health = assess(**UP | {down: False}, influx_unreachable_s=5.0, messages_waiting=0, oldest_unstored_s=0)
        assert health.readiness is Readiness.NOT_READY and health.detail.startswith("not_ready: "), health.detail
