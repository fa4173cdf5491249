"""The artifact: every wheel under wheels/, the same bytes for the same wheels."""

import tarfile
from pathlib import Path

import pytest

from controller.releases import ReleaseError, build_artifact


def wheels(folder: Path) -> Path:
    folder.mkdir()
    (folder / "lockerfleet-1.5.0-py3-none-any.whl").write_bytes(b"agent")
    (folder / "pydantic-2.9.0-py3-none-any.whl").write_bytes(b"dep")
    (folder / "notes.txt").write_text("not a wheel")
    return folder


def test_the_artifact_holds_every_wheel_and_nothing_else(tmp_path: Path) -> None:
    out = tmp_path / "a.tar"
    found = build_artifact(wheels(tmp_path / "w"), out)
    with tarfile.open(out) as tar:
        assert tar.getnames() == ["wheels/lockerfleet-1.5.0-py3-none-any.whl", "wheels/pydantic-2.9.0-py3-none-any.whl"]
        member = tar.extractfile("wheels/lockerfleet-1.5.0-py3-none-any.whl")
        assert member is not None and member.read() == b"agent"
    assert (found.name, found.size) == ("a.tar", out.stat().st_size)


def test_the_same_wheels_give_the_same_bytes(tmp_path: Path) -> None:
    folder = wheels(tmp_path / "w")
    first = build_artifact(folder, tmp_path / "1.tar")
    (folder / "pydantic-2.9.0-py3-none-any.whl").touch()
    second = build_artifact(folder, tmp_path / "2.tar")
    assert first.sha256 == second.sha256


def test_wheels_without_the_agent_are_refused(tmp_path: Path) -> None:
    folder = tmp_path / "w"
    folder.mkdir()
    (folder / "pydantic-2.9.0-py3-none-any.whl").write_bytes(b"dep")
    with pytest.raises(ReleaseError, match="no lockerfleet wheel"):
        build_artifact(folder, tmp_path / "a.tar")
    assert not (tmp_path / "a.tar").exists()
