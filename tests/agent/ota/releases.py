"""Signed test releases: a pinned key, manifests for any version, and artifacts (wheelhouse tarballs) built here."""

import hashlib
import io
import tarfile
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from schemas.release import PublicKeyEntry, ReleaseManifest, SignedRelease, TrustedKeys, signature_for

T0 = datetime(2026, 11, 24, 12, tzinfo=UTC)
HARDWARE = "locker-pi4-v1"
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
TRUSTED = TrustedKeys(keys=(PublicKeyEntry.of(KEY.public_key().public_bytes_raw()),))


def artifact(version: str, files: dict[str, bytes] | None = None) -> bytes:
    """A gzip'd tar standing in for a release's wheelhouse (the sim shim unpacks it into the slot)."""
    members = files or {"VERSION": version.encode(), "agent.py": f"print('agent {version}')\n".encode()}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in sorted(members.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def signed(
    version: str,
    data: bytes,
    *,
    min_version: str = "1.0.0",
    hardware: str = HARDWARE,
    expires: datetime = T0 + timedelta(days=30),
    key: Ed25519PrivateKey = KEY,
) -> SignedRelease:
    """A release of ``data`` signed by ``key``."""
    manifest = ReleaseManifest(
        version=version,
        hardware_models=(hardware,),
        min_version=min_version,
        artifact_name=f"lockerfleet-{version}.tar.gz",
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        created_at=T0 - timedelta(days=1),
        expires_at=expires,
    )
    return SignedRelease(manifest=manifest, signatures=(signature_for(manifest, key),))
