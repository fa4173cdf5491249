"""Signing keys on the operator's machine: a new Ed25519 key in a 0600 file, and the public half nodes pin."""

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from controller.releases.errors import ReleaseError
from schemas.release import PublicKeyEntry, TrustedKeys


def create_key(path: Path) -> PublicKeyEntry:
    """Write a new private key to ``path`` (PEM, mode 0600, never over an existing file); return its public entry."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ReleaseError(f"{path} exists: a signing key is never overwritten; choose another path") from None
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    return PublicKeyEntry.of(key.public_key().public_bytes_raw())


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Read a key written by :func:`create_key`; refuse one that others can read, like ssh does."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ReleaseError(f"no signing key at {path}: create one with create_key") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ReleaseError(f"{path} is readable by others (mode {stat.S_IMODE(mode):o}): run chmod 600 {path}")
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ReleaseError(f"{path} holds a {type(key).__name__}, not an Ed25519 key")
    return key


def public_entry(path: Path) -> PublicKeyEntry:
    """The public entry of the private key at ``path``."""
    return PublicKeyEntry.of(load_private_key(path).public_key().public_bytes_raw())


def write_trusted_keys(path: Path, entries: Iterable[PublicKeyEntry]) -> TrustedKeys:
    """Write the keys file a node pins (``trusted_keys.json``)."""
    keys = TrustedKeys(keys=tuple(entries))
    path.write_text(keys.model_dump_json(indent=2) + "\n")
    return keys


def read_trusted_keys(path: Path) -> TrustedKeys:
    """Read a keys file written by :func:`write_trusted_keys`."""
    try:
        return TrustedKeys.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        raise ReleaseError(f"no trusted keys file at {path}") from None
