"""Webhooks never reach into the controller's own network: a URL on a loopback, private, link-local or multicast
address is refused when a partner's key is issued and again before every delivery, unless explicitly allowed."""

import json
import logging
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from controller.cli import main
from controller.fleet.registry import Fleet
from controller.metrics import Metrics
from controller.notify.targets import WebhookTargetError, check_webhook_url
from controller.notify.webhooks import WebhookSender
from controller.store.reservations import ReservationStore
from tests.harness.webhook_receiver import WebhookReceiver

T0 = datetime(2026, 11, 24, 12, tzinfo=UTC)


def resolves_to(*addresses: str) -> Any:
    """A resolver answering every host with ``addresses`` (as ``socket.getaddrinfo`` would)."""

    def resolve(_host: str, port: int) -> list[tuple[Any, ...]]:
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in addresses
        ]

    return resolve


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "10.0.0.7", "172.16.3.4", "192.168.1.10", "169.254.169.254", "100.64.0.1", "224.0.0.251",
     "0.0.0.0", "::1", "fe80::1", "fd00::1", "ff02::1", "::ffff:127.0.0.1"],
)  # fmt: skip
def test_every_non_public_address_is_refused(address: str) -> None:
    with pytest.raises(WebhookTargetError, match="not a public address"):
        check_webhook_url("https://hooks.parcelco.example/lf", allow_private=False, resolve=resolves_to(address))


def test_one_private_address_among_public_ones_is_enough_to_refuse() -> None:
    resolve = resolves_to("93.184.216.34", "10.0.0.7")
    with pytest.raises(WebhookTargetError, match=r"resolves to 10\.0\.0\.7"):
        check_webhook_url("https://hooks.parcelco.example/lf", allow_private=False, resolve=resolve)


def test_public_addresses_pass_and_allow_private_lets_anything_through() -> None:
    public = resolves_to("93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946")
    check_webhook_url("https://hooks.parcelco.example/lf", allow_private=False, resolve=public)
    check_webhook_url("http://127.0.0.1:8080/lf", allow_private=True)


@pytest.mark.parametrize("url", ["ftp://hooks.example/lf", "https:///lf", "https://hooks.example:99999/"])
def test_urls_that_are_not_http_endpoints_are_refused_even_when_private_is_allowed(url: str) -> None:
    with pytest.raises(WebhookTargetError):
        check_webhook_url(url, allow_private=True)


def test_a_name_that_does_not_resolve_is_refused() -> None:
    with pytest.raises(WebhookTargetError, match="does not resolve"):
        check_webhook_url("https://no-such-host.invalid/lf", allow_private=False)


def test_keys_refuses_a_loopback_webhook_and_issues_no_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["keys", "--store-path", str(tmp_path / "lf.sqlite3"), "--partner", "parcelco", "--sites", '["centre"]']
    assert main([*args, "--webhook-url", "http://user:pw-s3cret@127.0.0.1:9/lf"]) == 2
    err = capsys.readouterr().err
    assert "--webhook-url refused" in err and "127.0.0.1" in err and "--webhook-allow-private" in err
    assert "pw-s3cret" not in err
    assert not (tmp_path / "lf-reservations.sqlite3").exists()  # refused before the store was even opened


def test_keys_registers_a_loopback_webhook_when_private_targets_are_allowed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["keys", "--store-path", str(tmp_path / "lf.sqlite3"), "--partner", "parcelco", "--sites", '["centre"]']
    args += ["--create-store", "true"]
    url = "http://user:pw-s3cret@127.0.0.1:9/lf"
    assert main([*args, "--webhook-url", url, "--webhook-allow-private", "true"]) == 0
    out = capsys.readouterr().out
    assert "webhook http://user:***@127.0.0.1:9/lf" in out and "pw-s3cret" not in out
    store = ReservationStore(f"sqlite:///{tmp_path / 'lf-reservations.sqlite3'}")
    try:
        found = store.webhook_of("parcelco")
        assert found is not None and found[0] == url
    finally:
        store.close()


def test_a_delivery_to_a_loopback_target_is_not_sent_and_is_retried(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    receiver = WebhookReceiver()
    store = ReservationStore(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    store.set_webhook("parcelco", receiver.url.replace("http://", "http://user:pw-s3cret@"))  # e.g. registered
    store.enqueue_webhook("parcelco", "r1:held:1-3", {"type": "reservation.held"}, T0)  # before DNS changed
    sender = WebhookSender(store, Metrics(lambda: Fleet().counts(0)), clock=T0.timestamp)
    try:
        with caplog.at_level(logging.WARNING):
            assert sender.deliver_due() == 0
        assert receiver.received == []  # no request reached the loopback endpoint
        [(_id, _partner, _event, body, attempts)] = store.due_webhooks(T0 + timedelta(days=1))
        assert (json.loads(body), attempts) == ({"type": "reservation.held"}, 1)  # kept for a later attempt
        assert "not a public address" in caplog.text and "url=http://user:***@127.0.0.1" in caplog.text
        assert "pw-s3cret" not in caplog.text
    finally:
        sender.stop()
        receiver.close()
        store.close()
