"""The releases directory the controller serves: one folder per version with ``release.json`` and the artifact.

``publish`` fills it atomically (a half-copied release is never visible); ``releases`` and ``find`` read it.
"""

import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from controller.releases.errors import ReleaseError
from controller.releases.signing import read_signed, write_signed
from schemas.release import ReleaseRefused, SignedRelease, verify_artifact
from schemas.semver import SemVer

log = logging.getLogger(__name__)

RELEASE_FILE: Final = "release.json"


@dataclass(frozen=True, slots=True)
class PublishedRelease:
    """A release in the releases directory: its signed manifest and where its artifact lies."""

    signed: SignedRelease
    artifact: Path

    @property
    def version(self) -> SemVer:
        """The release's version."""
        return self.signed.manifest.version


def publish(signed: SignedRelease, artifact: Path, releases_dir: Path) -> PublishedRelease:
    """Copy ``artifact`` and ``signed`` into ``releases_dir/<version>/`` after checking they belong together.

    Publishing the same release again changes nothing; another release under a published version is refused.
    """
    manifest = signed.manifest
    try:
        verify_artifact(artifact, manifest)
    except ReleaseRefused as exc:
        raise ReleaseError(f"{artifact} is not the artifact of release {manifest.version}: {exc}") from exc
    target = releases_dir / str(manifest.version)
    if target.exists():
        existing = find(releases_dir, manifest.version)
        if existing.signed.manifest != manifest:
            raise ReleaseError(f"release {manifest.version} is published with another manifest; bump the version")
        if existing.signed != signed:
            write_signed(target / RELEASE_FILE, signed)
        return existing
    releases_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{manifest.version}.", dir=releases_dir))
    try:
        shutil.copyfile(artifact, staging / manifest.artifact_name)
        write_signed(staging / RELEASE_FILE, signed)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info("release published version=%s artifact=%s dir=%s", manifest.version, manifest.artifact_name, target)
    return PublishedRelease(signed, target / manifest.artifact_name)


def find(releases_dir: Path, version: SemVer) -> PublishedRelease:
    """The published release ``version``; :class:`ReleaseError` when there is none."""
    folder = releases_dir / str(version)
    if not (folder / RELEASE_FILE).is_file():
        raise ReleaseError(f"release {version} is not published in {releases_dir}")
    signed = read_signed(folder / RELEASE_FILE)
    if signed.manifest.version != version:
        raise ReleaseError(f"{folder / RELEASE_FILE} describes {signed.manifest.version}, not {version}")
    return PublishedRelease(signed, folder / signed.manifest.artifact_name)


def releases(releases_dir: Path) -> list[PublishedRelease]:
    """Every published release, newest first; an unreadable folder is logged and skipped."""
    found: list[PublishedRelease] = []
    for folder in releases_dir.iterdir() if releases_dir.is_dir() else ():
        if folder.name.startswith(".") or not folder.is_dir():
            continue
        try:
            found.append(find(releases_dir, SemVer.parse(folder.name)))
        except (ReleaseError, ValueError) as exc:
            log.warning("release folder skipped dir=%s error=%r action=remove it or publish it again", folder, exc)
    return sorted(found, key=lambda r: r.version, reverse=True)
