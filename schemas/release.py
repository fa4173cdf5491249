"""Signed releases: the manifest both sides share, its canonical bytes, and the checks a node runs before installing.

A release is a :class:`ReleaseManifest` (what, for which hardware, how big, which sha256, valid until when) signed with
Ed25519 over :func:`canonical_bytes`, plus the artifact it names. :func:`verify_release` decides whether a node may
install a manifest and :func:`verify_artifact` whether the bytes it downloaded are that artifact; both raise
:class:`ReleaseRefused` with a :class:`RefusalReason`. See ``docs/releases.md`` for keys, rotation and what this keeps
of TUF.
"""

import base64
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, BinaryIO, Final, Self

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BeforeValidator,
    Field,
    PlainSerializer,
    WithJsonSchema,
    model_validator,
)

from schemas.envelope import ContractModel
from schemas.semver import SemVer
from schemas.types import ShortText

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

MAX_ARTIFACT_BYTES: Final = 512 * 1024 * 1024
"""Largest artifact a manifest may announce; a download is cut off at the manifest's own size."""

_CHUNK: Final = 1024 * 1024
_TIME_PATTERN: Final = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$"
_TIME = re.compile(_TIME_PATTERN)


def _canonical_time_text(value: object) -> object:
    if isinstance(value, str) and not _TIME.fullmatch(value):
        raise ValueError(f"{value!r}: release times are written YYYY-MM-DDTHH:MM:SSZ (UTC, whole seconds)")
    return value


def _utc_whole_seconds(value: datetime) -> datetime:
    if value.microsecond:
        raise ValueError(f"{value.isoformat()}: release times have whole seconds; drop the fraction")
    return value.astimezone(UTC)


ReleaseTime = Annotated[
    AwareDatetime,
    BeforeValidator(_canonical_time_text),
    AfterValidator(_utc_whole_seconds),
    PlainSerializer(lambda t: t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": _TIME_PATTERN}),
]
"""A UTC instant in whole seconds with one spelling (``2026-11-24T12:00:00Z``), so signed bytes are canonical."""

KeyId = Annotated[str, Field(pattern=r"^[0-9a-f]{16}$", description="First 16 hex digits of sha256(public key).")]
Sha256Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
ArtifactName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$", description="A file name.")]
PublicKeyB64 = Annotated[str, Field(pattern=r"^[A-Za-z0-9+/]{43}=$", description="Raw Ed25519 key, base64.")]
SignatureB64 = Annotated[str, Field(pattern=r"^[A-Za-z0-9+/]{86}==$", description="Ed25519 signature, base64.")]


def key_id_for(public_key: bytes) -> str:
    """The id of a raw 32-byte Ed25519 public key: its sha256, first 16 hex digits."""
    return hashlib.sha256(public_key).hexdigest()[:16]


class PublicKeyEntry(ContractModel):
    """One pinned Ed25519 public key with its id (checked against the key, so an id cannot be mislabelled)."""

    key_id: KeyId
    public_key: PublicKeyB64

    @classmethod
    def of(cls, public_key: bytes) -> Self:
        """Entry for a raw public key."""
        return cls(key_id=key_id_for(public_key), public_key=base64.b64encode(public_key).decode())

    def raw(self) -> bytes:
        """The raw 32-byte public key."""
        return base64.b64decode(self.public_key, validate=True)

    @model_validator(mode="after")
    def _id_matches_key(self) -> Self:
        if key_id_for(self.raw()) != self.key_id:
            raise ValueError(f"key_id {self.key_id} does not match its public key (expected {key_id_for(self.raw())})")
        return self


class TrustedKeys(ContractModel):
    """The keys file a node pins (``trusted_keys.json``): releases must be signed by these."""

    keys: tuple[PublicKeyEntry, ...] = Field(min_length=1, max_length=16)

    def mapping(self) -> dict[str, bytes]:
        """``key_id → raw public key``, as :func:`verify_release` takes them."""
        return {entry.key_id: entry.raw() for entry in self.keys}


class ReleaseManifest(ContractModel):
    """What a release is: version, where it may go, the artifact's size and digest, and how long it is offered."""

    version: SemVer
    hardware_models: tuple[ShortText, ...] = Field(min_length=1, max_length=32)
    min_version: SemVer = Field(
        description="Anti-rollback floor: once a node commits this release it never installs a version below this."
    )
    artifact_name: ArtifactName
    size: int = Field(ge=1, le=MAX_ARTIFACT_BYTES, description="Artifact length in bytes.")
    sha256: Sha256Hex
    created_at: ReleaseTime
    expires_at: ReleaseTime = Field(description="Nodes refuse the manifest from this instant (freeze protection).")
    notes: Annotated[str, Field(pattern=r"^[^\x00-\x1f\x7f]*$")] | None = Field(
        default=None, description="One line for people (no control characters, at most 256)."
    )
    trusted_keys: tuple[PublicKeyEntry, ...] | None = Field(
        default=None,
        min_length=1,
        max_length=16,
        description="Key rotation: after committing this release the node pins exactly these keys.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.min_version > self.version:
            raise ValueError(f"min_version {self.min_version} is above version {self.version}")
        if self.expires_at <= self.created_at:
            raise ValueError("expires_at must be later than created_at")
        if len(set(self.hardware_models)) != len(self.hardware_models):
            raise ValueError("hardware_models lists a model twice")
        return self


class Signature(ContractModel):
    """An Ed25519 signature over the manifest's canonical bytes, by the key ``key_id``."""

    key_id: KeyId
    sig: SignatureB64


class SignedRelease(ContractModel):
    """A manifest and its signatures (none is allowed here so that a missing signature is refused by reason)."""

    manifest: ReleaseManifest
    signatures: tuple[Signature, ...] = Field(default=(), max_length=8)


def canonical_bytes(manifest: ReleaseManifest) -> bytes:
    """The bytes that are signed: the manifest as JSON with sorted keys and no whitespace, UTF-8."""
    document = manifest.model_dump(mode="json", exclude_none=True)
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def signature_for(manifest: ReleaseManifest, private_key: "Ed25519PrivateKey") -> Signature:
    """Sign ``manifest`` with ``private_key``."""
    public = private_key.public_key().public_bytes_raw()
    sig = private_key.sign(canonical_bytes(manifest))
    return Signature(key_id=key_id_for(public), sig=base64.b64encode(sig).decode())


class RefusalReason(StrEnum):
    """Why a node refuses a release or its artifact (also the ``reason`` of a ``failed`` OTA report)."""

    BAD_SIGNATURE = "bad_signature"
    """Missing, malformed or not matching the manifest, or fewer valid signatures than the threshold."""
    UNKNOWN_KEY = "unknown_key"
    """Signed only by keys this node does not pin."""
    EXPIRED = "expired"
    """The node's clock is at or past ``expires_at``."""
    DOWNGRADE = "downgrade"
    """Below the node's anti-rollback floor, or not newer than the installed version without an explicit rollback."""
    WRONG_HARDWARE = "wrong_hardware"
    """The node's hardware model is not in ``hardware_models``."""
    TAMPERED = "tampered"
    """The artifact's sha256 differs from the manifest's."""
    SIZE_MISMATCH = "size_mismatch"
    """The artifact is shorter or longer than the manifest says."""


class ReleaseRefused(Exception):  # noqa: N818 - reads as the outcome at call sites: `except ReleaseRefused`
    """A release or artifact that must not be installed, with the reason and what was found."""

    def __init__(self, reason: RefusalReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


def verify_release(
    signed: SignedRelease,
    trusted_keys: Mapping[str, bytes],
    *,
    now: datetime,
    hardware_model: str,
    installed_version: SemVer | None,
    floor: SemVer | None = None,
    allow_not_newer: bool = False,
    threshold: int = 1,
) -> ReleaseManifest:
    """Return the manifest if this node may install it, else raise :class:`ReleaseRefused`.

    Signatures come first (nothing unsigned is looked at), then expiry, hardware and version. ``floor`` is the highest
    ``min_version`` of any release this node committed (see :func:`next_floor`); ``allow_not_newer`` permits a
    reinstall or an operator's rollback to an older version, never one below the floor.
    """
    if threshold < 1:
        raise ValueError(f"threshold must be at least 1, got {threshold}")
    manifest = signed.manifest
    _check_signatures(canonical_bytes(manifest), signed.signatures, trusted_keys, threshold)
    if now >= manifest.expires_at:
        raise ReleaseRefused(RefusalReason.EXPIRED, f"{manifest.version} expired at {manifest.expires_at.isoformat()}")
    if hardware_model not in manifest.hardware_models:
        models = ", ".join(manifest.hardware_models)
        raise ReleaseRefused(RefusalReason.WRONG_HARDWARE, f"{manifest.version} is for {models}, not {hardware_model}")
    if floor is not None and manifest.version < floor:
        raise ReleaseRefused(RefusalReason.DOWNGRADE, f"{manifest.version} is below this node's floor {floor}")
    if installed_version is not None and manifest.version <= installed_version and not allow_not_newer:
        raise ReleaseRefused(
            RefusalReason.DOWNGRADE, f"{manifest.version} is not newer than installed {installed_version}"
        )
    return manifest


def _check_signatures(
    message: bytes, signatures: Iterable[Signature], trusted_keys: Mapping[str, bytes], threshold: int
) -> None:
    # Imported here: every process imports the contract, and cryptography costs ~6 MiB RSS that only an update needs.
    from cryptography.exceptions import InvalidSignature  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey  # noqa: PLC0415

    valid: set[str] = set()
    bad: list[str] = []
    unknown: list[str] = []
    for signature in signatures:
        raw_key = trusted_keys.get(signature.key_id)
        if raw_key is None:
            unknown.append(signature.key_id)
            continue
        try:
            Ed25519PublicKey.from_public_bytes(raw_key).verify(base64.b64decode(signature.sig), message)
        except InvalidSignature:
            bad.append(signature.key_id)
        else:
            valid.add(signature.key_id)
    if len(valid) >= threshold:
        return
    if bad:
        raise ReleaseRefused(RefusalReason.BAD_SIGNATURE, f"signature by {', '.join(bad)} does not match the manifest")
    if unknown:
        raise ReleaseRefused(RefusalReason.UNKNOWN_KEY, f"signed by {', '.join(unknown)}, none pinned on this node")
    raise ReleaseRefused(RefusalReason.BAD_SIGNATURE, f"{len(valid)} valid signature(s), {threshold} required")


def next_floor(floor: SemVer | None, committed: ReleaseManifest) -> SemVer:
    """The node's anti-rollback floor after it commits ``committed``: it only ever rises."""
    return committed.min_version if floor is None else max(floor, committed.min_version)


def verify_artifact(source: Path | BinaryIO, manifest: ReleaseManifest) -> None:
    """Check that ``source`` holds exactly the artifact of ``manifest`` (size, then sha256), reading in chunks.

    Reading stops one byte past the announced size, so an endless or oversized stream costs at most that much.
    """
    if isinstance(source, Path):
        with source.open("rb") as stream:
            verify_artifact(stream, manifest)
        return
    digest = hashlib.sha256()
    seen = 0
    while seen <= manifest.size:
        chunk = source.read(min(_CHUNK, manifest.size + 1 - seen))
        if not chunk:
            break
        seen += len(chunk)
        digest.update(chunk)
    if seen != manifest.size:
        found = f"more than {manifest.size}" if seen > manifest.size else str(seen)
        raise ReleaseRefused(
            RefusalReason.SIZE_MISMATCH, f"{manifest.artifact_name}: {found} bytes, manifest says {manifest.size}"
        )
    if digest.hexdigest() != manifest.sha256:
        raise ReleaseRefused(
            RefusalReason.TAMPERED,
            f"{manifest.artifact_name}: sha256 {digest.hexdigest()} differs from the manifest's {manifest.sha256}",
        )
