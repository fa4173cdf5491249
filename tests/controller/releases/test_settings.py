"""The release commands' settings read flags and refuse incomplete ones by name."""

from pathlib import Path

import pytest
from pydantic import ValidationError
from pydantic_settings import CliApp

from controller.releases.settings import ReleasePublishSettings, ReleaseSignSettings
from schemas.semver import SemVer


def test_sign_settings_from_flags() -> None:
    args = ["--artifact", "a.tar", "--key", "k", "--version", "1.5.0", "--hardware-models", '["rpi4-locker-12"]']
    settings = CliApp.run(ReleaseSignSettings, cli_args=args)
    assert settings.version == SemVer.parse("1.5.0")
    assert settings.hardware_models == ["rpi4-locker-12"]
    assert settings.out == Path("release.json")


def test_a_new_release_needs_a_version_and_models() -> None:
    with pytest.raises(ValidationError, match="--version and --hardware-models"):
        CliApp.run(ReleaseSignSettings, cli_args=["--artifact", "a.tar", "--key", "k"])
    added = CliApp.run(ReleaseSignSettings, cli_args=["--artifact", "a.tar", "--key", "k", "--add-signature", "true"])
    assert added.add_signature


def test_a_version_that_is_not_semantic_is_refused() -> None:
    args = ["--artifact", "a", "--key", "k", "--version", "1.5", "--hardware-models", '["m"]']
    with pytest.raises(ValidationError, match="not a semantic version"):
        CliApp.run(ReleaseSignSettings, cli_args=args)


def test_publish_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCKERFLEET_RELEASES_DIR", "/srv/releases")
    settings = CliApp.run(ReleasePublishSettings, cli_args=["--artifact", "a.tar"])
    assert settings.releases_dir == Path("/srv/releases")
