"""The controller's command-signing key: Ed25519, derived from the controller secret kept in the store.

Nodes only take the commands that change what they trust or run (``provision_key``, ``update``) signed with this
key (:mod:`schemas.command_trust`). Deriving it from the secret every node's code key already derives from means
every controller sharing a store signs with the same key and nothing new needs keeping: the key is exactly as
protected as that secret (the store, 0600), and replacing the secret replaces both.
"""

import base64
import hashlib
import hmac

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

_LABEL = b"lockerfleet/command-signing/v1"


def command_signing_key(controller_secret: bytes) -> Ed25519PrivateKey:
    """The controller's command-signing key, derived from its secret."""
    return Ed25519PrivateKey.from_private_bytes(hmac.new(controller_secret, _LABEL, hashlib.sha256).digest())


def public_key_line(private_key: Ed25519PrivateKey) -> str:
    """The public half as a node pins it (raw key, base64): the one line of ``--controller-key-file``."""
    return base64.b64encode(private_key.public_key().public_bytes_raw()).decode()
