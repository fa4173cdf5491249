"""Signing keys: private files stay private, and a node keys file pins exactly the public halves."""

import stat
from pathlib import Path

import pytest

from controller.releases import ReleaseError, create_key, load_private_key, public_entry, read_trusted_keys
from tests.controller.releases.workspace import Workspace


def test_a_new_key_is_readable_by_its_owner_only(workspace: Workspace) -> None:
    assert stat.S_IMODE(workspace.key.stat().st_mode) == 0o600
    assert public_entry(workspace.key) == workspace.public


def test_an_existing_key_is_never_overwritten(workspace: Workspace) -> None:
    before = workspace.key.read_bytes()
    with pytest.raises(ReleaseError, match="never overwritten"):
        create_key(workspace.key)
    assert workspace.key.read_bytes() == before


def test_a_key_others_can_read_is_refused(workspace: Workspace) -> None:
    workspace.key.chmod(0o640)
    with pytest.raises(ReleaseError, match="chmod 600"):
        load_private_key(workspace.key)


def test_a_missing_key_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(ReleaseError, match="create one"):
        load_private_key(tmp_path / "nothing.key")


def test_the_keys_file_round_trips(workspace: Workspace) -> None:
    assert read_trusted_keys(workspace.trusted_file) == workspace.trusted
    assert workspace.trusted.mapping() == {workspace.public.key_id: workspace.public.raw()}
