"""Describe an artifact in a manifest, sign it, and check a signed release the way a node would."""

from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

from pydantic import ValidationError

from controller.releases.artifact import facts
from controller.releases.errors import ReleaseError
from controller.releases.keys import load_private_key
from schemas.release import (
    PublicKeyEntry,
    ReleaseManifest,
    SignedRelease,
    TrustedKeys,
    signature_for,
    verify_artifact,
    verify_release,
)
from schemas.semver import SemVer


def make_manifest(
    artifact: Path,
    *,
    version: SemVer,
    hardware_models: Sequence[str],
    min_version: SemVer,
    now: datetime,
    valid_for: timedelta,
    notes: str | None = None,
    trusted_keys: Sequence[PublicKeyEntry] | None = None,
) -> ReleaseManifest:
    """A manifest for ``artifact`` (size and sha256 read from it), valid from ``now`` for ``valid_for``."""
    found = facts(artifact)
    created = now.replace(microsecond=0)
    try:
        return ReleaseManifest(
            version=version,
            hardware_models=tuple(hardware_models),
            min_version=min_version,
            artifact_name=found.name,
            size=found.size,
            sha256=found.sha256,
            created_at=created,
            expires_at=created + valid_for,
            notes=notes,
            trusted_keys=tuple(trusted_keys) if trusted_keys else None,
        )
    except ValidationError as exc:
        raise ReleaseError(f"cannot describe {artifact} as release {version}: {exc}") from exc


def sign(release: ReleaseManifest | SignedRelease, key_path: Path) -> SignedRelease:
    """Add the signature of the key at ``key_path`` (a second signer adds to the first; re-signing replaces)."""
    signed = release if isinstance(release, SignedRelease) else SignedRelease(manifest=release)
    signature = signature_for(signed.manifest, load_private_key(key_path))
    others = tuple(s for s in signed.signatures if s.key_id != signature.key_id)
    return SignedRelease(manifest=signed.manifest, signatures=(*others, signature))


def verify(
    signed: SignedRelease,
    artifact: Path,
    trusted_keys: TrustedKeys,
    *,
    now: datetime,
    hardware_model: str | None = None,
    installed_version: SemVer | None = None,
    threshold: int = 1,
) -> ReleaseManifest:
    """Check signatures, expiry and the artifact as a node would; raise :class:`~schemas.release.ReleaseRefused`.

    Without ``hardware_model`` the manifest's first model is assumed (so only signatures, expiry and the artifact are
    really checked); give a node's model and version to check what that node would decide.
    """
    manifest = verify_release(
        signed,
        trusted_keys.mapping(),
        now=now,
        hardware_model=hardware_model or signed.manifest.hardware_models[0],
        installed_version=installed_version,
        threshold=threshold,
    )
    verify_artifact(artifact, manifest)
    return manifest


def read_signed(path: Path) -> SignedRelease:
    """Read a signed release file (``release.json``)."""
    try:
        return SignedRelease.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        raise ReleaseError(f"no signed release at {path}") from None
    except ValidationError as exc:
        raise ReleaseError(f"{path} is not a signed release: {exc}") from exc


def write_signed(path: Path, signed: SignedRelease) -> None:
    """Write a signed release file atomically, indented for people (signatures cover the canonical bytes)."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(signed.model_dump_json(indent=2, exclude_none=True) + "\n")
    partial.replace(path)
