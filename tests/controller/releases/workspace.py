"""What the ``workspace`` fixture hands a test."""

from dataclasses import dataclass
from pathlib import Path

from schemas.release import PublicKeyEntry, TrustedKeys


@dataclass(frozen=True)
class Workspace:
    """A signing key, its keys file and an artifact, all under ``dir``."""

    dir: Path
    key: Path
    public: PublicKeyEntry
    trusted: TrustedKeys
    trusted_file: Path
    artifact: Path
