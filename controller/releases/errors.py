"""One error family for release tooling: callers catch :class:`ReleaseError` as a whole."""


class ReleaseError(Exception):
    """A release step that cannot go on (missing file, unsafe key file, version already published…)."""
