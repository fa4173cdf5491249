"""A signing key, a small artifact and a trusted keys file in a temporary directory."""

from pathlib import Path

import pytest

from controller.releases import create_key, write_trusted_keys
from tests.controller.releases.workspace import Workspace


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    key = tmp_path / "signing.key"
    public = create_key(key)
    trusted_file = tmp_path / "trusted_keys.json"
    trusted = write_trusted_keys(trusted_file, [public])
    artifact = tmp_path / "lockerfleet-1.5.0.tar"
    artifact.write_bytes(bytes(range(256)) * 300)
    return Workspace(tmp_path, key, public, trusted, trusted_file, artifact)
