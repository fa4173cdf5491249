"""The controller's two ingest sessions subscribe to disjoint channels; events and telemetry are shared in a group."""

from controller.mqtt.ingest_session import CONTROL_CHANNELS, DATA_CHANNELS, IngestLink, LinkSettings
from schemas import Channel


def filters(channels: tuple[Channel, ...], group: str | None) -> list[str]:
    settings = LinkSettings(url="mqtt://127.0.0.1:1", client_id="c", share_group=group, channels=channels)
    return IngestLink(settings, lambda *_: None).filters()


def test_telemetry_and_control_channels_split_between_the_sessions() -> None:
    assert filters(DATA_CHANNELS, None) == ["lockers/v1/+/telemetry"]
    assert filters(CONTROL_CHANNELS, None) == ["lockers/v1/+/status", "lockers/v1/+/result", "lockers/v1/+/event"]


def test_a_share_group_splits_telemetry_and_events_but_every_process_gets_every_status_and_result() -> None:
    assert filters(DATA_CHANNELS, "g") == ["$share/g/lockers/v1/+/telemetry"]
    assert filters(CONTROL_CHANNELS, "g") == [
        "lockers/v1/+/status",
        "lockers/v1/+/result",
        "$share/g/lockers/v1/+/event",
    ]
