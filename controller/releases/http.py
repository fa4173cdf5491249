"""``/v1/releases``: what is published (operators) and the artifacts themselves (nodes), resumable by HTTP range.

The listing and the signed manifests sit behind the ``operator`` dependency the application passes in. Artifacts
do not: a node holds no operator key, and it trusts an artifact for its signed sha256, not for where it came from.
Downloads answer ``Range`` with 206 and ``Content-Range``, an unsatisfiable range with 416, and ``If-Range`` with
the whole file when it changed (Starlette's ``FileResponse``).
"""

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException
from fastapi import Path as PathParam
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from controller.releases.catalog import PublishedRelease, find, releases
from controller.releases.errors import ReleaseError
from schemas.release import SignedRelease
from schemas.semver import SEMVER_PATTERN, SemVer

VersionPath = Annotated[
    str, PathParam(pattern=SEMVER_PATTERN, max_length=64, description="The release's semantic version.")
]


class ReleaseView(BaseModel):
    """One published release as operators see it."""

    version: str
    hardware_models: list[str]
    min_version: str
    artifact_name: str
    size: int
    sha256: str
    created_at: datetime
    expires_at: datetime
    notes: str | None
    signed_by: list[str] = Field(description="Key ids of the signatures.")
    artifact_path: str = Field(description="Where nodes download the artifact, relative to this API.")

    @classmethod
    def of(cls, release: PublishedRelease) -> "ReleaseView":
        """View of a published release."""
        m = release.signed.manifest
        return cls(
            version=str(m.version),
            hardware_models=list(m.hardware_models),
            min_version=str(m.min_version),
            artifact_name=m.artifact_name,
            size=m.size,
            sha256=m.sha256,
            created_at=m.created_at,
            expires_at=m.expires_at,
            notes=m.notes,
            signed_by=[s.key_id for s in release.signed.signatures],
            artifact_path=artifact_path(m.version),
        )


def artifact_path(version: SemVer) -> str:
    """Path of a release's artifact under this router, for the ``artifact_urls`` of an update command."""
    return f"/v1/releases/{version}/artifact"


def releases_router(releases_dir: Path, *, operator: Callable[..., object] | None = None) -> APIRouter:
    """Routes serving ``releases_dir``; ``operator`` (a FastAPI dependency) guards the listing and manifests."""
    guarded = [Depends(operator)] if operator is not None else []
    router = APIRouter(prefix="/v1/releases", tags=["releases"])

    def published(version: str) -> PublishedRelease:
        try:
            return find(releases_dir, SemVer.parse(version))
        except (ReleaseError, ValueError, OSError) as exc:  # not a version, or not a name this disk can hold
            raise HTTPException(404, f"no published release {version[:64]!r}") from exc

    @router.get("", dependencies=guarded)
    def list_releases() -> list[ReleaseView]:
        """Every published release, newest first."""
        return [ReleaseView.of(r) for r in releases(releases_dir)]

    @router.get("/{version}", dependencies=guarded, responses={404: {"description": "Not published."}})
    def get_release(version: VersionPath) -> SignedRelease:
        """The signed manifest, as an update command carries it."""
        return published(version).signed

    @router.get(
        "/{version}/artifact",
        response_class=FileResponse,
        responses={206: {"description": "The requested range."}, 404: {}, 416: {"description": "Range outside."}},
    )
    def get_artifact(version: VersionPath) -> FileResponse:
        """The artifact's bytes; send ``Range: bytes=N-`` to resume a download."""
        release = published(version)
        if not release.artifact.is_file():
            raise HTTPException(404, f"artifact of {version} is missing from {releases_dir}: publish it again")
        return FileResponse(release.artifact, media_type="application/x-tar")

    return router
