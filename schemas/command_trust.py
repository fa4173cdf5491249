"""What a node checks before it trusts a command, whatever the broker let through: lifetime, clocks, signature.

The broker's ACL decides who may publish on a node's command topic; these checks hold even when that fails (a
leaked controller login, a misconfigured ACL). A command is refused when it lives longer than its type's
``MAX_LIFETIME`` or was issued more than :data:`~schemas.command.MAX_CLOCK_SKEW` in the node's future. A type with
``SIGNED`` (``provision_key``, ``update``) must carry an Ed25519 signature over :func:`command_bytes` by the controller
key the node pins (the README's Security section says how a node comes to pin it).
"""

import base64
import json
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

from schemas.command import MAX_CLOCK_SKEW, Command, CommandBase, CommandSignature
from schemas.release import key_id_for

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

C = TypeVar("C", bound=CommandBase)


class CommandRefused(Exception):  # noqa: N818 - reads as the outcome at call sites: `except CommandRefused`
    """A command a node must not carry out, with why (for the result's detail and the log)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def check_lifetime(command: Command, now: datetime) -> None:
    """Refuse a command that lives longer than its type allows or was issued in the node's future."""
    lifetime = command.expires_at - command.issued_at
    if lifetime > command.MAX_LIFETIME:
        raise CommandRefused(
            f"{command.type} lives {lifetime} (issued_at {command.issued_at.isoformat()}, expires_at "
            f"{command.expires_at.isoformat()}); at most {command.MAX_LIFETIME} is accepted"
        )
    if command.issued_at - now > MAX_CLOCK_SKEW:
        raise CommandRefused(
            f"issued_at {command.issued_at.isoformat()} is ahead of this node's clock {now.isoformat()} by more "
            f"than {MAX_CLOCK_SKEW}: check the controller's and the node's clocks (NTP)"
        )


def command_bytes(command: CommandBase) -> bytes:
    """The bytes that are signed: the command without ``signature`` as JSON, sorted keys, no whitespace, UTF-8."""
    document = command.model_dump(mode="json", exclude={"signature"})
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sign_command(command: C, private_key: "Ed25519PrivateKey") -> C:
    """``command`` with its signature by ``private_key``."""
    public = private_key.public_key().public_bytes_raw()
    signature = CommandSignature(
        public_key=base64.b64encode(public).decode(),
        sig=base64.b64encode(private_key.sign(command_bytes(command))).decode(),
    )
    return command.model_copy(update={"signature": signature})


def verify_command(command: Command, pinned: bytes | None) -> bytes:
    """Check the signature of a ``SIGNED`` command; return the signer's raw public key.

    ``pinned`` is the controller key this node trusts; None accepts any valid signature (the caller then pins its
    key: trust on first use). Raises :class:`CommandRefused` for a missing, foreign or non-matching signature.
    """
    signature = command.signature
    expected = f"key {key_id_for(pinned)}" if pinned is not None else "the controller's command key"
    if signature is None:
        raise CommandRefused(f"{command.type} must be signed by {expected}; it is not signed")
    signer = base64.b64decode(signature.public_key, validate=True)
    if pinned is not None and signer != pinned:
        raise CommandRefused(f"signed by key {key_id_for(signer)}; this node trusts {expected} only")
    # Imported here: every process imports the contract, and cryptography costs ~6 MiB RSS that few commands need.
    from cryptography.exceptions import InvalidSignature  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey  # noqa: PLC0415

    try:
        Ed25519PublicKey.from_public_bytes(signer).verify(base64.b64decode(signature.sig), command_bytes(command))
    except InvalidSignature:
        raise CommandRefused(f"the signature by key {key_id_for(signer)} does not match the command") from None
    return signer
