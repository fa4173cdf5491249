"""``lockerfleet release keygen|build|sign|verify|publish``: the operator's side of a signed release, offline.

Each prints what it made and what to do next; a refusal prints one line on stderr and exits 1 (2 for bad flags).
"""

import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from pydantic_settings import BaseSettings

from controller.releases.artifact import build_artifact, build_wheels
from controller.releases.catalog import publish
from controller.releases.errors import ReleaseError
from controller.releases.keys import create_key, read_trusted_keys, write_trusted_keys
from controller.releases.settings import (
    ReleaseBuildSettings,
    ReleaseKeySettings,
    ReleasePublishSettings,
    ReleaseSignSettings,
    ReleaseVerifySettings,
)
from controller.releases.signing import make_manifest, read_signed, sign, verify, write_signed
from schemas.cli import Command
from schemas.release import ReleaseRefused


def _refusing(name: str, run: Callable[[BaseSettings], int]) -> Callable[[BaseSettings], int]:
    def guarded(settings: BaseSettings) -> int:
        try:
            return run(settings)
        except (ReleaseError, ReleaseRefused) as exc:
            print(f"lockerfleet release {name}: {exc}", file=sys.stderr)
            return 1

    return guarded


def _keygen(settings: BaseSettings) -> int:
    assert isinstance(settings, ReleaseKeySettings)
    entry = create_key(settings.key)
    print(f"signing key {entry.key_id} written to {settings.key} (mode 0600); keep it off the controller")
    print(entry.model_dump_json())
    if settings.trusted_keys is not None:
        write_trusted_keys(settings.trusted_keys, [entry])
        print(f"nodes pin it from {settings.trusted_keys} (copy it to each locker's trusted_keys.json)")
    return 0


def _build(settings: BaseSettings) -> int:
    assert isinstance(settings, ReleaseBuildSettings)
    settings.wheel_dir.mkdir(parents=True, exist_ok=True)
    build_wheels(settings.project_dir, settings.wheel_dir)
    built = build_artifact(settings.wheel_dir, settings.out)
    print(f"artifact {settings.out}: {built.size} bytes, sha256 {built.sha256}")
    print(f"next: lockerfleet release sign --artifact {settings.out} --key <key> --version <x.y.z> --hardware-models …")
    return 0


def _sign(settings: BaseSettings) -> int:
    assert isinstance(settings, ReleaseSignSettings)
    if settings.add_signature:
        signed = sign(read_signed(settings.out), settings.key)
    else:
        assert settings.version is not None  # the settings insist on it for a new manifest
        rotate = read_trusted_keys(settings.rotate_to).keys if settings.rotate_to else None
        manifest = make_manifest(
            settings.artifact,
            version=settings.version,
            hardware_models=settings.hardware_models,
            min_version=settings.min_version or settings.version,
            now=datetime.now(UTC),
            valid_for=timedelta(days=settings.valid_days),
            notes=settings.notes,
            trusted_keys=rotate,
        )
        signed = sign(manifest, settings.key)
    write_signed(settings.out, signed)
    m = signed.manifest
    signers = ", ".join(s.key_id for s in signed.signatures)
    print(f"release {m.version} for {', '.join(m.hardware_models)} signed by {signers}; expires {m.expires_at}")
    print(f"written to {settings.out}; next: lockerfleet release publish --release {settings.out} --artifact …")
    return 0


def _verify(settings: BaseSettings) -> int:
    assert isinstance(settings, ReleaseVerifySettings)
    manifest = verify(
        read_signed(settings.release),
        settings.artifact,
        read_trusted_keys(settings.trusted_keys),
        now=datetime.now(UTC),
        hardware_model=settings.hardware_model,
        installed_version=settings.installed_version,
        threshold=settings.threshold,
    )
    print(f"release {manifest.version} verifies: signatures, expiry ({manifest.expires_at}), size and sha256")
    return 0


def _publish(settings: BaseSettings) -> int:
    assert isinstance(settings, ReleasePublishSettings)
    published = publish(read_signed(settings.release), settings.artifact, settings.releases_dir)
    print(f"release {published.version} published in {settings.releases_dir}; the controller serves it at once")
    print(f"next: lockerfleet rollout create --release-version {published.version}")
    return 0


RELEASE_COMMANDS: dict[str, Command] = {
    "keygen": Command(
        "create an Ed25519 signing key (and a trusted_keys.json pinning it)",
        ReleaseKeySettings,
        _refusing("keygen", _keygen),
        ("controller",),
    ),
    "build": Command(
        "pack the agent and its dependencies as wheels into one artifact",
        ReleaseBuildSettings,
        _refusing("build", _build),
        ("controller",),
    ),
    "sign": Command(
        "describe an artifact in a manifest and sign it (or add a signature)",
        ReleaseSignSettings,
        _refusing("sign", _sign),
        ("controller",),
    ),
    "verify": Command(
        "check a signed release and its artifact as a node would",
        ReleaseVerifySettings,
        _refusing("verify", _verify),
        ("controller",),
    ),
    "publish": Command(
        "copy a signed release and its artifact into the controller's releases directory",
        ReleasePublishSettings,
        _refusing("publish", _publish),
        ("controller",),
    ),
}
"""``lockerfleet release <name>``."""
