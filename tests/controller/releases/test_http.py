"""``/v1/releases`` over HTTP: the listing behind the operator dependency, artifacts resumable by range."""

from datetime import UTC, datetime, timedelta
from typing import Annotated

import pytest
from fastapi import FastAPI, Header, HTTPException
from fastapi.testclient import TestClient

from controller.releases import make_manifest, publish, releases_router, sign
from schemas.release import SignedRelease
from schemas.semver import SemVer
from tests.controller.releases.workspace import Workspace

NOW = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)


def operator(authorization: Annotated[str | None, Header()] = None) -> str:
    if authorization != "Bearer op":
        raise HTTPException(401, "operator key needed")
    return "op"


@pytest.fixture
def client(workspace: Workspace) -> TestClient:
    manifest = make_manifest(
        workspace.artifact,
        version=SemVer.parse("1.5.0"),
        hardware_models=["rpi4-locker-12"],
        min_version=SemVer.parse("1.4.0"),
        now=NOW,
        valid_for=timedelta(days=30),
    )
    publish(sign(manifest, workspace.key), workspace.artifact, workspace.dir / "releases")
    app = FastAPI()
    app.include_router(releases_router(workspace.dir / "releases", operator=operator))
    return TestClient(app)


OP = {"Authorization": "Bearer op"}


def test_listing_needs_the_operator(client: TestClient) -> None:
    assert client.get("/v1/releases").status_code == 401
    body = client.get("/v1/releases", headers=OP).json()
    assert [(r["version"], r["artifact_path"]) for r in body] == [("1.5.0", "/v1/releases/1.5.0/artifact")]


def test_the_signed_manifest_is_served_as_signed(client: TestClient, workspace: Workspace) -> None:
    response = client.get("/v1/releases/1.5.0", headers=OP)
    assert response.status_code == 200
    served = SignedRelease.model_validate_json(response.content)
    assert served.signatures[0].key_id == workspace.public.key_id
    assert client.get("/v1/releases/1.9.0", headers=OP).status_code == 404
    assert client.get("/v1/releases/latest", headers=OP).status_code == 422


def test_the_whole_artifact_downloads_without_a_key(client: TestClient, workspace: Workspace) -> None:
    response = client.get("/v1/releases/1.5.0/artifact")
    assert response.status_code == 200
    assert response.content == workspace.artifact.read_bytes()
    assert response.headers["accept-ranges"] == "bytes"


@pytest.mark.parametrize("offset", [1, 12_345, 76_799])
def test_a_resumed_download_gets_exactly_the_remaining_bytes(
    client: TestClient, workspace: Workspace, offset: int
) -> None:
    data = workspace.artifact.read_bytes()
    response = client.get("/v1/releases/1.5.0/artifact", headers={"Range": f"bytes={offset}-"})
    assert response.status_code == 206
    assert response.content == data[offset:]
    assert response.headers["content-range"] == f"bytes {offset}-{len(data) - 1}/{len(data)}"


def test_a_range_past_the_end_is_416(client: TestClient, workspace: Workspace) -> None:
    size = workspace.artifact.stat().st_size
    response = client.get("/v1/releases/1.5.0/artifact", headers={"Range": f"bytes={size}-"})
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{size}"


def test_if_range_with_a_stale_etag_sends_the_whole_file(client: TestClient, workspace: Workspace) -> None:
    response = client.get("/v1/releases/1.5.0/artifact", headers={"Range": "bytes=10-", "If-Range": '"stale"'})
    assert response.status_code == 200
    assert response.content == workspace.artifact.read_bytes()


def test_a_missing_artifact_file_is_404(client: TestClient, workspace: Workspace) -> None:
    (workspace.dir / "releases" / "1.5.0" / "lockerfleet-1.5.0.tar").unlink()
    response = client.get("/v1/releases/1.5.0/artifact")
    assert response.status_code == 404
    assert "publish it again" in response.json()["detail"]
