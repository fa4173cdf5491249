"""Update commands and ota reports refuse field combinations that make no sense."""

import pytest
from pydantic import ValidationError

from schemas import MAX_PAYLOAD_BYTES, Channel, OtaEvent, OtaState, UpdateCommand, decode, encode
from schemas.release import PublicKeyEntry, SignedRelease
from tests import samples


def test_a_rollback_carries_no_release() -> None:
    doc = samples.update_command().model_dump()
    with pytest.raises(ValidationError, match="rollback carries no release"):
        UpdateCommand.model_validate({**doc, "rollback": True})
    rollback = UpdateCommand.model_validate({**doc, "rollback": True, "release": None, "artifact_urls": ()})
    assert rollback.rollback


@pytest.mark.parametrize("missing", [{"release": None}, {"artifact_urls": ()}])
def test_an_update_needs_a_release_and_a_url(missing: dict[str, object]) -> None:
    with pytest.raises(ValidationError, match="needs a release"):
        UpdateCommand.model_validate({**samples.update_command().model_dump(), **missing})


def test_artifact_urls_are_http() -> None:
    doc = samples.update_command().model_dump()
    with pytest.raises(ValidationError, match="artifact_urls"):
        UpdateCommand.model_validate({**doc, "artifact_urls": ["file:///etc/passwd"]})


@pytest.mark.parametrize("state", [OtaState.DEFERRED, OtaState.FAILED, OtaState.ROLLED_BACK])
def test_these_states_say_why(state: OtaState) -> None:
    doc = samples.ota_event(state=state, reason="door_open").model_dump() | {"reason": None}
    with pytest.raises(ValidationError, match="needs a reason"):
        OtaEvent.model_validate(doc)
    assert OtaEvent.model_validate({**doc, "reason": "door_open"}).final is (state is not OtaState.DEFERRED)


def test_progress_states_carry_no_reason() -> None:
    with pytest.raises(ValidationError, match="carries no reason"):
        OtaEvent.model_validate({**samples.ota_event(state=OtaState.SUCCEEDED).model_dump(), "reason": "x"})


@pytest.mark.parametrize(
    ("state", "counts"),
    [
        (OtaState.DOWNLOADING, {"bytes_done": None}),
        (OtaState.VERIFYING, {"bytes_done": 1, "bytes_total": 2}),
        (OtaState.VERIFYING, {"bytes_total": 2}),
    ],
)
def test_byte_counts_belong_to_downloading(state: OtaState, counts: dict[str, object]) -> None:
    doc = {**samples.ota_event(state=state).model_dump(), **counts}
    with pytest.raises(ValidationError, match="exactly when the state is downloading"):
        OtaEvent.model_validate(doc)


def test_download_progress_cannot_pass_its_total() -> None:
    doc = {**samples.ota_event().model_dump(), "bytes_done": 2048}
    with pytest.raises(ValidationError, match="exceeds bytes_total"):
        OtaEvent.model_validate(doc)


def test_the_largest_update_command_fits_in_one_payload() -> None:
    manifest = samples.release_manifest().model_copy(
        update={
            "hardware_models": tuple(f"{i:02d}".ljust(64, "m") for i in range(32)),
            "notes": "n" * 256,
            "trusted_keys": tuple(PublicKeyEntry.of(bytes([i]) * 32) for i in range(16)),
        }
    )
    signature = samples.signed_release(manifest).signatures[0]
    release = SignedRelease(manifest=manifest, signatures=(signature,) * 8)
    urls = tuple(f"https://mirror-{i}.example/".ljust(1024, "p") for i in range(4))
    command = samples.update_command().model_copy(update={"release": release, "artifact_urls": urls})
    payload = encode(command)
    assert len(payload) <= MAX_PAYLOAD_BYTES
    assert decode(Channel.COMMAND, payload) == command
