"""The controller's command-signing key as this node pins it: signed commands must carry exactly this key.

Two ways to come by it. Pinned by the installer: ``--controller-key-file`` names a file holding the public key line
the controller logs at start (``command signing key ... public_key=...``); that file is only ever read. Trust on
first use otherwise: the first validly signed command's key is written to ``controller-key.pub`` in the data
directory (0600) and only that key is accepted from then on. The risk of the second way is the window before the
first provisioning: whoever can publish on the node's command topic first (a stolen broker login and a weak ACL) is
pinned instead of the controller, and the real controller's ``provision_key`` is refused from then on (loudly).
"""

import base64
import binascii
import logging
import os
from pathlib import Path
from typing import Final

from schemas.private_files import private_file
from schemas.release import key_id_for

log = logging.getLogger(__name__)

TOFU_FILE: Final = "controller-key.pub"
"""Where a node without ``--controller-key-file`` keeps the key it pinned on first use (in its data directory)."""


class ControllerKeyError(ValueError):
    """The pinned key file cannot be read as an Ed25519 public key."""


class ControllerKey:
    """The controller key this node trusts: read from ``path``, or (``trust_first``) pinned there on first use."""

    def __init__(self, path: Path, *, trust_first: bool) -> None:
        self.path = path
        self.trust_first = trust_first
        self._pinned = self._read()
        if self._pinned is None and not trust_first:
            raise ControllerKeyError(
                f"no controller key at {path}: write the public_key the controller logs at start "
                "(`command signing key ... public_key=...`) into it, one line"
            )

    @property
    def pinned(self) -> bytes | None:
        """The raw public key signed commands must carry; None until the first is pinned (trust on first use)."""
        return self._pinned

    def pin(self, public_key: bytes) -> None:
        """Pin ``public_key`` on first use (file 0600); refuses to replace a pinned key."""
        if self._pinned is not None:
            raise ControllerKeyError(f"{self.path} already pins key {key_id_for(self._pinned)}; it is never replaced")
        private_file(self.path)
        with self.path.open("w") as out:
            out.write(base64.b64encode(public_key).decode() + "\n")
            out.flush()
            os.fsync(out.fileno())
        self._pinned = public_key
        log.warning(
            "controller key pinned on first use key_id=%s path=%s action=check this key_id against the controller's "
            "start log (`command signing key key_id=...`); if it differs, wipe the node and pin with "
            "--controller-key-file",
            key_id_for(public_key),
            self.path,
        )

    def _read(self) -> bytes | None:
        try:
            text = self.path.read_text().strip()
        except FileNotFoundError:
            return None
        try:
            key = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if len(key) != 32:
            raise ControllerKeyError(
                f"{self.path} does not hold an Ed25519 public key (one base64 line of 32 bytes): rewrite it with "
                "the public_key the controller logs at start"
            )
        return key
