"""Manifests, signatures and publishing, checked the way a node checks them."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from controller.releases import (
    ReleaseError,
    create_key,
    find,
    make_manifest,
    publish,
    read_signed,
    releases,
    sign,
    verify,
    write_signed,
)
from schemas.release import RefusalReason, ReleaseManifest, ReleaseRefused, SignedRelease, TrustedKeys
from schemas.semver import SemVer
from tests.controller.releases.workspace import Workspace

NOW = datetime(2026, 11, 24, 12, 0, 0, 999, tzinfo=UTC)


def manifest(workspace: Workspace, version: str = "1.5.0") -> ReleaseManifest:
    return make_manifest(
        workspace.artifact,
        version=SemVer.parse(version),
        hardware_models=["rpi4-locker-12"],
        min_version=SemVer.parse("1.4.0"),
        now=NOW,
        valid_for=timedelta(days=30),
    )


def test_the_manifest_describes_the_artifact(workspace: Workspace) -> None:
    m = manifest(workspace)
    assert (m.artifact_name, m.size) == ("lockerfleet-1.5.0.tar", workspace.artifact.stat().st_size)
    assert m.created_at == NOW.replace(microsecond=0)
    assert m.expires_at - m.created_at == timedelta(days=30)


def test_a_signed_release_verifies_and_survives_its_file(workspace: Workspace) -> None:
    signed = sign(manifest(workspace), workspace.key)
    write_signed(workspace.dir / "release.json", signed)
    again = read_signed(workspace.dir / "release.json")
    assert again == signed
    assert verify(again, workspace.artifact, workspace.trusted, now=NOW) == signed.manifest


def test_a_tampered_artifact_fails_verification(workspace: Workspace) -> None:
    signed = sign(manifest(workspace), workspace.key)
    data = bytearray(workspace.artifact.read_bytes())
    data[100] ^= 0xFF
    workspace.artifact.write_bytes(bytes(data))
    with pytest.raises(ReleaseRefused) as info:
        verify(signed, workspace.artifact, workspace.trusted, now=NOW)
    assert info.value.reason is RefusalReason.TAMPERED


def test_a_key_the_node_does_not_pin_fails_verification(workspace: Workspace) -> None:
    other = workspace.dir / "other.key"
    create_key(other)
    signed = sign(manifest(workspace), other)
    with pytest.raises(ReleaseRefused) as info:
        verify(signed, workspace.artifact, workspace.trusted, now=NOW)
    assert info.value.reason is RefusalReason.UNKNOWN_KEY


def test_a_second_signer_adds_and_resigning_replaces(workspace: Workspace) -> None:
    second = workspace.dir / "second.key"
    second_public = create_key(second)
    once = sign(manifest(workspace), workspace.key)
    twice = sign(sign(once, second), workspace.key)
    assert sorted(s.key_id for s in twice.signatures) == sorted([workspace.public.key_id, second_public.key_id])
    both = TrustedKeys(keys=(workspace.public, second_public))
    assert verify(twice, workspace.artifact, both, now=NOW, threshold=2) == once.manifest


def test_rotation_ships_the_next_keys_inside_the_signed_manifest(workspace: Workspace) -> None:
    new_public = create_key(workspace.dir / "new.key")
    m = make_manifest(
        workspace.artifact,
        version=SemVer.parse("1.5.0"),
        hardware_models=["rpi4-locker-12"],
        min_version=SemVer.parse("1.4.0"),
        now=NOW,
        valid_for=timedelta(days=30),
        trusted_keys=[workspace.public, new_public],
    )
    verified = verify(sign(m, workspace.key), workspace.artifact, workspace.trusted, now=NOW)
    assert verified.trusted_keys == (workspace.public, new_public)


def test_a_floor_above_the_version_is_refused_with_the_inputs(workspace: Workspace) -> None:
    with pytest.raises(ReleaseError, match=r"min_version 2\.0\.0 is above version 1\.5\.0"):
        make_manifest(
            workspace.artifact,
            version=SemVer.parse("1.5.0"),
            hardware_models=["rpi4-locker-12"],
            min_version=SemVer.parse("2.0.0"),
            now=NOW,
            valid_for=timedelta(days=1),
        )


def test_publish_puts_both_files_under_the_version(workspace: Workspace) -> None:
    signed = sign(manifest(workspace), workspace.key)
    target = workspace.dir / "releases"
    published = publish(signed, workspace.artifact, target)
    assert published.artifact == target / "1.5.0" / "lockerfleet-1.5.0.tar"
    assert published.artifact.read_bytes() == workspace.artifact.read_bytes()
    assert find(target, SemVer.parse("1.5.0")).signed == signed
    assert [p.name for p in target.iterdir()] == ["1.5.0"]


def test_publishing_again_is_a_no_op_but_another_manifest_is_refused(workspace: Workspace) -> None:
    target = workspace.dir / "releases"
    signed = sign(manifest(workspace), workspace.key)
    publish(signed, workspace.artifact, target)
    assert publish(signed, workspace.artifact, target).signed == signed
    later = manifest(workspace).model_copy(update={"notes": "changed"})
    with pytest.raises(ReleaseError, match="bump the version"):
        publish(sign(later, workspace.key), workspace.artifact, target)
    assert find(target, SemVer.parse("1.5.0")).signed == signed


def test_an_artifact_that_is_not_the_manifests_is_not_published(workspace: Workspace) -> None:
    signed = sign(manifest(workspace), workspace.key)
    workspace.artifact.write_bytes(b"something else")
    target = workspace.dir / "releases"
    with pytest.raises(ReleaseError, match="size_mismatch"):
        publish(signed, workspace.artifact, target)
    assert not target.exists() or not any(target.iterdir())


def test_releases_are_listed_newest_first_and_broken_folders_skipped(workspace: Workspace) -> None:
    target = workspace.dir / "releases"
    for version in ("1.5.0", "1.10.0", "1.6.0-rc.1"):
        publish(sign(manifest(workspace, version), workspace.key), workspace.artifact, target)
    (target / "2.0.0").mkdir()
    (target / "not-a-version").mkdir()
    assert [str(r.version) for r in releases(target)] == ["1.10.0", "1.6.0-rc.1", "1.5.0"]


def test_a_missing_release_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ReleaseError, match="no signed release"):
        read_signed(tmp_path / "release.json")
    (tmp_path / "release.json").write_text("{}")
    with pytest.raises(ReleaseError, match="not a signed release"):
        read_signed(tmp_path / "release.json")


def test_an_unsigned_release_is_refused(workspace: Workspace) -> None:
    with pytest.raises(ReleaseRefused) as info:
        verify(SignedRelease(manifest=manifest(workspace)), workspace.artifact, workspace.trusted, now=NOW)
    assert info.value.reason is RefusalReason.BAD_SIGNATURE
