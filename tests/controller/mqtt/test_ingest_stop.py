"""Stopping the ingest session while the broker is away ends its thread quietly (no RetryError traceback)."""

import logging
import threading

import pytest

from controller.devstack.services import free_port
from controller.mqtt.ingest_session import IngestLink, LinkSettings
from tests.harness.mqtt import wait_until


def test_a_stop_during_the_reconnect_backoff_ends_the_session_thread_without_an_error(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    crashed: list[threading.ExceptHookArgs] = []
    monkeypatch.setattr(threading, "excepthook", crashed.append)
    caplog.set_level(logging.WARNING, logger="controller.mqtt.ingest_session")
    link = IngestLink(LinkSettings(url=f"mqtt://127.0.0.1:{free_port()}", client_id="t"), lambda *_: None)
    with pytest.raises(ConnectionError, match="is the broker up"):
        link.start(timeout_s=0.2)
    assert wait_until(lambda: "attempt=2" in caplog.text, 10)  # refused twice: now in the backoff
    link.stop()
    assert not link._thread.is_alive()
    assert [repr(c.exc_value) for c in crashed] == []
