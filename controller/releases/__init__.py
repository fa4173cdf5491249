"""Releases on the controller: keys, the artifact, signing, the releases directory and its HTTP routes.

The manifest and the checks a node runs are the contract's (:mod:`schemas.release`); this package is the
operator's side of it. See ``docs/releases.md``.
"""

from controller.releases.artifact import ArtifactFacts, build_artifact, build_wheels
from controller.releases.catalog import PublishedRelease, find, publish, releases
from controller.releases.errors import ReleaseError
from controller.releases.http import artifact_path, releases_router
from controller.releases.keys import create_key, load_private_key, public_entry, read_trusted_keys, write_trusted_keys
from controller.releases.signing import make_manifest, read_signed, sign, verify, write_signed

__all__ = [
    "ArtifactFacts",
    "PublishedRelease",
    "ReleaseError",
    "artifact_path",
    "build_artifact",
    "build_wheels",
    "create_key",
    "find",
    "load_private_key",
    "make_manifest",
    "public_entry",
    "publish",
    "read_signed",
    "read_trusted_keys",
    "releases",
    "releases_router",
    "sign",
    "verify",
    "write_signed",
    "write_trusted_keys",
]
