"""``lockerfleet release``: keygen, sign, verify and publish from the command line; refusals exit 1 with one line."""

from pathlib import Path

import pytest

from controller.cli import main
from controller.releases import find
from schemas.semver import SemVer


def test_keygen_sign_verify_publish(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key, trusted, release = tmp_path / "signing.key", tmp_path / "trusted_keys.json", tmp_path / "release.json"
    artifact = tmp_path / "lockerfleet-1.5.0.tar"
    artifact.write_bytes(b"wheels" * 1000)
    assert main(["release", "keygen", "--key", str(key), "--trusted-keys", str(trusted)]) == 0
    assert key.stat().st_mode & 0o077 == 0 and trusted.is_file()
    sign = ["release", "sign", "--artifact", str(artifact), "--key", str(key), "--out", str(release)]
    assert main([*sign, "--version", "1.5.0", "--hardware-models", '["rpi4-locker-12"]']) == 0
    verify = ["release", "verify", "--release", str(release), "--artifact", str(artifact)]
    assert main([*verify, "--trusted-keys", str(trusted)]) == 0
    assert "release 1.5.0 verifies" in capsys.readouterr().out

    publish = ["release", "publish", "--release", str(release), "--artifact", str(artifact)]
    assert main([*publish, "--releases-dir", str(tmp_path / "releases")]) == 0
    assert find(tmp_path / "releases", SemVer.parse("1.5.0")).artifact.read_bytes() == artifact.read_bytes()

    artifact.write_bytes(b"tampered" * 1000)
    capsys.readouterr()
    assert main([*verify, "--trusted-keys", str(trusted)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("lockerfleet release verify: size_mismatch") and "\n" not in err


def test_a_key_is_never_overwritten(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "signing.key"
    assert main(["release", "keygen", "--key", str(key)]) == 0
    before = key.read_bytes()
    assert main(["release", "keygen", "--key", str(key)]) == 1
    assert "never overwritten" in capsys.readouterr().err and key.read_bytes() == before


def test_an_unknown_subcommand_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["release", "frobnicate"])
    assert "invalid choice" in capsys.readouterr().err
