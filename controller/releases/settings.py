"""Settings of the ``lockerfleet release`` commands: every setting is a ``--flag`` and a ``LOCKERFLEET_*`` variable."""

from pathlib import Path
from typing import Annotated, Self

from pydantic import BeforeValidator, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.semver import SemVer

_CONFIG = SettingsConfigDict(env_prefix="LOCKERFLEET_", extra="forbid", cli_kebab_case=True)

FlagVersion = Annotated[SemVer, BeforeValidator(lambda v: v if isinstance(v, str | SemVer) else str(v))]
"""A version flag: ``--version 1.5`` arrives as a number; it is refused as text, by the semver rule."""


class ReleaseKeySettings(BaseSettings):
    """``lockerfleet release keygen``: create a signing key (private file 0600) and print its public entry."""

    model_config = _CONFIG

    key: Path = Field(description="Where to write the new private key; an existing file is never overwritten.")
    trusted_keys: Path | None = Field(
        default=None, description="Also write a node keys file (trusted_keys.json) pinning just this key."
    )


class ReleaseBuildSettings(BaseSettings):
    """``lockerfleet release build``: wheels of the agent and its dependencies, packed into one artifact."""

    model_config = _CONFIG

    project_dir: Path = Field(default=Path(), description="The lockerfleet source tree to build.")
    wheel_dir: Path = Field(default=Path(".run/wheels"), description="Where pip puts the wheels.")
    out: Path = Field(description="The artifact to write, e.g. lockerfleet-1.5.0.tar.")


class ReleaseSignSettings(BaseSettings):
    """``lockerfleet release sign``: describe an artifact in a manifest and sign it (or add a signature)."""

    model_config = _CONFIG

    artifact: Path = Field(description="The artifact the manifest describes (size and sha256 are read from it).")
    key: Path = Field(description="The private signing key (mode 0600).")
    out: Path = Field(default=Path("release.json"), description="The signed release to write.")
    version: FlagVersion | None = Field(default=None, description="The release's semantic version, e.g. 1.5.0.")
    hardware_models: list[str] = Field(default=[], description="Models it installs on, e.g. '[\"rpi4-locker-12\"]'.")
    min_version: FlagVersion | None = Field(
        default=None, description="Anti-rollback floor once installed (default: the release's own version)."
    )
    valid_days: float = Field(default=90, gt=0, le=3660, description="Days from now until nodes refuse it.")
    notes: str | None = Field(default=None, max_length=256, description="One line for people.")
    rotate_to: Path | None = Field(
        default=None, description="A keys file the nodes pin after committing this release (key rotation)."
    )
    add_signature: bool = Field(
        default=False, description="Add this key's signature to the existing --out release instead of a new manifest."
    )

    @model_validator(mode="after")
    def _new_manifest_is_described(self) -> Self:
        if not self.add_signature and (self.version is None or not self.hardware_models):
            raise ValueError("a new release needs --version and --hardware-models (or --add-signature)")
        return self


class ReleaseVerifySettings(BaseSettings):
    """``lockerfleet release verify``: check a signed release and its artifact as a node would."""

    model_config = _CONFIG

    release: Path = Field(default=Path("release.json"), description="The signed release.")
    artifact: Path = Field(description="The artifact it describes.")
    trusted_keys: Path = Field(description="A node keys file (trusted_keys.json).")
    hardware_model: str | None = Field(default=None, description="Check as a node of this model would.")
    installed_version: FlagVersion | None = Field(default=None, description="Check as a node on this version would.")
    threshold: int = Field(default=1, ge=1, le=8, description="Valid signatures of distinct pinned keys required.")


class ReleasePublishSettings(BaseSettings):
    """``lockerfleet release publish``: put a signed release and its artifact where the controller serves them."""

    model_config = _CONFIG

    release: Path = Field(default=Path("release.json"), description="The signed release.")
    artifact: Path = Field(description="The artifact it describes.")
    releases_dir: Path = Field(default=Path("releases"), description="The directory behind /v1/releases.")
