"""Values InfluxDB cannot store are refused by the contract, not taken and then lost at the write.

The payload fuzz chaos test (tests/chaos/test_payload_fuzz.py) found valid messages stamped in year 9999 or 0001,
and telemetry with an ``outbox_dropped`` of 300 digits: the controller acted on them, and InfluxDB then refused
their lines (nanoseconds since 1970, or an integer field, beyond 64 bits).
"""

from datetime import timedelta

import pytest

from controller.influx.lineproto import ledger_line, ns, ota_line, telemetry_line
from schemas import Channel, OtaState, PayloadError, RejectReason, decode, encode
from schemas.types import EARLIEST, LATEST
from tests import samples

INT64 = 2**63


@pytest.mark.parametrize(
    "instant", ["9999-12-31T23:59:59Z", "0001-01-01T00:00:00+00:00", "2262-04-12T00:00:00Z", "1677-09-21T00:12:43Z"]
)
def test_an_instant_outside_what_influxdb_stores_is_refused_as_invalid(instant: str) -> None:
    payload = encode(samples.telemetry()).decode()
    stamped = payload.replace(f'"ts":"{samples.T0.isoformat().replace("+00:00", "Z")}"', f'"ts":"{instant}"')
    assert stamped != payload
    with pytest.raises(PayloadError) as refused:
        decode(Channel.TELEMETRY, stamped.encode())
    assert refused.value.reason is RejectReason.INVALID
    assert "the range InfluxDB stores" in refused.value.detail


def test_the_first_and_last_instants_accepted_make_lines_influxdb_stores() -> None:
    for instant in (EARLIEST, LATEST - timedelta(microseconds=1)):
        sample = decode(Channel.TELEMETRY, encode(samples.telemetry(ts=instant)))
        assert -INT64 < ns(sample.ts) < INT64
        assert telemetry_line(sample).endswith(f" {ns(instant)}")
    event = samples.ledger_event().model_copy(update={"ts": EARLIEST})
    assert ledger_line(event).endswith(f" {ns(EARLIEST)}")


def test_integers_beyond_64_bits_are_refused_as_invalid_and_the_largest_accepted_is_stored() -> None:
    for big, fits in ((INT64, False), (INT64 - 1, True)):
        telemetry = encode(samples.telemetry()).replace(b'"outbox_dropped":0', f'"outbox_dropped":{big}'.encode())
        ota = encode(samples.ota_event()).replace(b'"bytes_total":1024', f'"bytes_total":{big}'.encode())
        if not fits:
            for channel, payload in ((Channel.TELEMETRY, telemetry), (Channel.EVENT, ota)):
                with pytest.raises(PayloadError) as refused:
                    decode(channel, payload)
                assert refused.value.reason is RejectReason.INVALID
            continue
        assert f"outbox_dropped={big}i" in telemetry_line(decode(Channel.TELEMETRY, telemetry))
        event = decode(Channel.EVENT, ota)
        assert event.kind == "ota" and event.state is OtaState.DOWNLOADING
        assert f"bytes_total={big}i" in ota_line(event)
