"""The interface every platform shim implements, and the error they raise."""

from pathlib import Path
from typing import Protocol


class ShimError(RuntimeError):
    """A platform step failed (install, switch, commit, rollback); the message says what to do."""


class Shim(Protocol):
    """Slots on one platform. Every method is idempotent and leaves the slot that starts next complete."""

    name: str

    def current(self) -> str | None:
        """The version that runs (on A/B images: the slot booted); None before the first release."""
        ...

    def previous(self) -> str | None:
        """The version a rollback returns to, if any."""
        ...

    def install(self, version: str, artifact: Path) -> None:
        """Install ``artifact`` into a new slot for ``version``; a half-installed slot of it is discarded first.

        Never touches the current slot; raises :class:`ShimError` when the artifact cannot be installed.
        """
        ...

    def discard(self, version: str) -> None:
        """Delete the slot of ``version`` unless it is current or previous (after a failed or cancelled update)."""
        ...

    def switch(self, version: str) -> None:
        """Make the complete slot of ``version`` the one that starts next, on trial, atomically."""
        ...

    def trial(self) -> str | None:
        """The version on trial (switched to, not yet committed)."""
        ...

    def boot_attempts(self) -> int:
        """Starts of the trial slot the platform counted (0 when nothing is on trial)."""
        ...

    def commit(self) -> None:
        """Make the trial slot permanent."""
        ...

    def rollback(self) -> None:
        """Make the previous slot the one that starts next and end any trial."""
        ...

    def restart(self) -> None:
        """Start the agent again in the slot that starts next (the caller has stopped the agent)."""
        ...
