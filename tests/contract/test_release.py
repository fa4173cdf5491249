"""Release verification: every way a release or artifact can be wrong is refused with its own reason."""

import hashlib
import io
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas.release import (
    PublicKeyEntry,
    RefusalReason,
    ReleaseManifest,
    ReleaseRefused,
    SignedRelease,
    TrustedKeys,
    canonical_bytes,
    key_id_for,
    next_floor,
    signature_for,
    verify_artifact,
    verify_release,
)
from schemas.semver import SemVer
from tests import samples

PUBLIC = samples.RELEASE_KEY.public_key().public_bytes_raw()
TRUSTED = {key_id_for(PUBLIC): PUBLIC}
NOW = samples.T0 + timedelta(days=1)
HARDWARE = "rpi4-locker-12"
ARTIFACT = bytes(range(256)) * 4


def verify(signed: SignedRelease, **overrides: object) -> ReleaseManifest:
    args: dict[str, object] = {
        "now": NOW,
        "hardware_model": HARDWARE,
        "installed_version": SemVer.parse("1.4.2"),
        "floor": SemVer.parse("1.0.0"),
    }
    args.update(overrides)
    return verify_release(signed, TRUSTED, **args)  # type: ignore[arg-type]


def refusal(signed: SignedRelease, **overrides: object) -> RefusalReason:
    with pytest.raises(ReleaseRefused) as info:
        verify(signed, **overrides)
    return info.value.reason


def real_manifest() -> ReleaseManifest:
    return samples.release_manifest(size=len(ARTIFACT), sha256=hashlib.sha256(ARTIFACT).hexdigest())


def test_a_good_release_is_accepted() -> None:
    assert verify(samples.signed_release()) == samples.release_manifest()


def test_missing_signature_is_refused() -> None:
    assert refusal(SignedRelease(manifest=samples.release_manifest())) is RefusalReason.BAD_SIGNATURE


def test_signature_of_another_manifest_is_refused() -> None:
    other = samples.release_manifest(version="1.6.0")
    forged = SignedRelease(manifest=samples.release_manifest(), signatures=samples.signed_release(other).signatures)
    assert refusal(forged) is RefusalReason.BAD_SIGNATURE


def test_manifest_changed_after_signing_is_refused() -> None:
    signed = samples.signed_release()
    bigger = signed.manifest.model_copy(update={"size": signed.manifest.size + 1})
    assert refusal(SignedRelease(manifest=bigger, signatures=signed.signatures)) is RefusalReason.BAD_SIGNATURE


def test_signature_by_an_impostor_under_a_trusted_id_is_refused() -> None:
    manifest = samples.release_manifest()
    impostor = signature_for(manifest, Ed25519PrivateKey.generate()).model_copy(update={"key_id": key_id_for(PUBLIC)})
    assert refusal(SignedRelease(manifest=manifest, signatures=(impostor,))) is RefusalReason.BAD_SIGNATURE


def test_unknown_key_is_refused() -> None:
    manifest = samples.release_manifest()
    stranger = signature_for(manifest, Ed25519PrivateKey.generate())
    assert refusal(SignedRelease(manifest=manifest, signatures=(stranger,))) is RefusalReason.UNKNOWN_KEY


def test_an_extra_unknown_signature_does_not_hide_a_valid_one() -> None:
    manifest = samples.release_manifest()
    stranger = signature_for(manifest, Ed25519PrivateKey.generate())
    signed = SignedRelease(manifest=manifest, signatures=(stranger, signature_for(manifest, samples.RELEASE_KEY)))
    assert verify(signed) == manifest


def test_threshold_counts_distinct_trusted_keys() -> None:
    second = Ed25519PrivateKey.generate()
    second_public = second.public_key().public_bytes_raw()
    trusted = {**TRUSTED, key_id_for(second_public): second_public}
    manifest = samples.release_manifest()
    once = signature_for(manifest, samples.RELEASE_KEY)
    kwargs = {"now": NOW, "hardware_model": HARDWARE, "installed_version": None, "threshold": 2}
    with pytest.raises(ReleaseRefused) as info:
        verify_release(SignedRelease(manifest=manifest, signatures=(once, once)), trusted, **kwargs)  # type: ignore[arg-type]
    assert info.value.reason is RefusalReason.BAD_SIGNATURE
    both = SignedRelease(manifest=manifest, signatures=(once, signature_for(manifest, second)))
    assert verify_release(both, trusted, **kwargs) == manifest  # type: ignore[arg-type]


def test_expired_manifest_is_refused_from_its_expiry_instant() -> None:
    signed = samples.signed_release()
    expiry = signed.manifest.expires_at
    assert verify(signed, now=expiry - timedelta(seconds=1)) == signed.manifest
    assert refusal(signed, now=expiry) is RefusalReason.EXPIRED


def test_wrong_hardware_is_refused() -> None:
    assert refusal(samples.signed_release(), hardware_model="rpi3-locker-6") is RefusalReason.WRONG_HARDWARE


def test_below_the_floor_is_refused_even_as_an_explicit_rollback() -> None:
    signed = samples.signed_release()
    assert refusal(signed, floor=SemVer.parse("1.6.0"), allow_not_newer=True) is RefusalReason.DOWNGRADE


@pytest.mark.parametrize("installed", ["1.5.0", "1.5.1", "2.0.0-rc.1"])
def test_not_newer_than_installed_is_refused_unless_asked_for(installed: str) -> None:
    signed = samples.signed_release()
    assert refusal(signed, installed_version=SemVer.parse(installed)) is RefusalReason.DOWNGRADE
    assert verify(signed, installed_version=SemVer.parse(installed), allow_not_newer=True) == signed.manifest


def test_a_zero_threshold_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="threshold"):
        verify(samples.signed_release(), threshold=0)


def test_floor_only_rises() -> None:
    manifest = samples.release_manifest()
    assert next_floor(None, manifest) == SemVer.parse("1.4.0")
    assert next_floor(SemVer.parse("1.3.0"), manifest) == SemVer.parse("1.4.0")
    assert next_floor(SemVer.parse("1.5.0"), manifest) == SemVer.parse("1.5.0")


def test_the_artifact_of_the_manifest_is_accepted() -> None:
    verify_artifact(io.BytesIO(ARTIFACT), real_manifest())


def test_artifact_from_a_path_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "a.tar"
    path.write_bytes(ARTIFACT[:-1] + b"\x00")
    with pytest.raises(ReleaseRefused) as info:
        verify_artifact(path, real_manifest())
    assert info.value.reason is RefusalReason.TAMPERED


@pytest.mark.parametrize("position", [0, 500, len(ARTIFACT) - 1])
def test_tampered_artifact_is_refused(position: int) -> None:
    tampered = bytearray(ARTIFACT)
    tampered[position] ^= 0x01
    with pytest.raises(ReleaseRefused) as info:
        verify_artifact(io.BytesIO(bytes(tampered)), real_manifest())
    assert info.value.reason is RefusalReason.TAMPERED


@pytest.mark.parametrize("data", [ARTIFACT[:-1], ARTIFACT + b"x", b""])
def test_artifact_of_another_size_is_refused(data: bytes) -> None:
    with pytest.raises(ReleaseRefused) as info:
        verify_artifact(io.BytesIO(data), real_manifest())
    assert info.value.reason is RefusalReason.SIZE_MISMATCH


class EndlessStream(io.RawIOBase):
    """A stream that never ends, counting what was read from it."""

    def __init__(self) -> None:
        self.served = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: "bytearray | memoryview") -> int:  # type: ignore[override]
        view = memoryview(buffer)
        view[:] = b"\x00" * len(view)
        self.served += len(view)
        return len(view)


def test_an_endless_artifact_is_cut_off_one_byte_past_its_size() -> None:
    stream = EndlessStream()
    with pytest.raises(ReleaseRefused) as info:
        verify_artifact(stream, real_manifest())  # type: ignore[arg-type]
    assert info.value.reason is RefusalReason.SIZE_MISMATCH
    assert stream.served == len(ARTIFACT) + 1


def test_canonical_bytes_are_sorted_compact_json() -> None:
    data = canonical_bytes(samples.release_manifest())
    assert data.startswith(b'{"artifact_name":"lockerfleet-1.5.0.tar","created_at":"2026-11-24T12:00:00Z",')
    assert b" " not in data.replace(b"door timing fix", b"")


@pytest.mark.parametrize(
    "spelling", ["2026-11-24T12:00:00+00:00", "2026-11-24t12:00:00Z", "2026-11-24 12:00:00Z", "2026-11-24T12:00:00.5Z"]
)
def test_release_times_have_one_spelling(spelling: str) -> None:
    doc = samples.release_manifest().model_dump(mode="json")
    with pytest.raises(ValidationError, match="YYYY-MM-DDTHH:MM:SSZ"):
        ReleaseManifest.model_validate({**doc, "created_at": spelling})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"min_version": "1.6.0"}, "above version"),
        ({"expires_at": "2026-11-24T12:00:00Z"}, "later than created_at"),
        ({"hardware_models": ["a", "a"]}, "twice"),
        ({"notes": "two\nlines"}, "notes"),
        ({"size": 0}, "size"),
    ],
)
def test_inconsistent_manifest_is_refused(change: dict[str, object], message: str) -> None:
    doc = samples.release_manifest().model_dump(mode="json")
    with pytest.raises(ValidationError, match=message):
        ReleaseManifest.model_validate({**doc, **change})


def test_a_key_entry_with_the_wrong_id_is_refused() -> None:
    entry = PublicKeyEntry.of(PUBLIC)
    assert TrustedKeys(keys=(entry,)).mapping() == TRUSTED
    with pytest.raises(ValidationError, match="does not match"):
        PublicKeyEntry(key_id="0" * 16, public_key=entry.public_key)


ROTATING = samples.release_manifest().model_copy(update={"trusted_keys": (PublicKeyEntry.of(PUBLIC),)})
MANIFEST_BYTES = canonical_bytes(ROTATING)
SIGNATURES = samples.signed_release(ReleaseManifest.model_validate_json(MANIFEST_BYTES)).signatures


@given(position=st.integers(0, len(MANIFEST_BYTES) - 1), value=st.integers(0, 255))
def test_any_single_byte_change_of_the_signed_bytes_fails(position: int, value: int) -> None:
    mutated = bytearray(MANIFEST_BYTES)
    if mutated[position] == value:
        return
    mutated[position] = value
    try:
        manifest = ReleaseManifest.model_validate_json(bytes(mutated))
    except ValidationError:
        return
    with pytest.raises(ReleaseRefused) as info:
        verify(SignedRelease(manifest=manifest, signatures=SIGNATURES))
    assert info.value.reason is RefusalReason.BAD_SIGNATURE


def test_the_unmutated_bytes_verify() -> None:
    manifest = ReleaseManifest.model_validate_json(MANIFEST_BYTES)
    assert canonical_bytes(manifest) == MANIFEST_BYTES
    assert verify(SignedRelease(manifest=manifest, signatures=SIGNATURES)) == manifest
