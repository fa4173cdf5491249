"""What a node checks before trusting a command: each type's lifetime bound, the clock skew, and signatures over
canonical bytes that survive the wire (issue 14, finding 7)."""

from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from schemas import Channel, Command, decode, encode
from schemas.command import MAX_CLOCK_SKEW
from schemas.command_trust import CommandRefused, check_lifetime, command_bytes, sign_command, verify_command
from tests import samples
from tests.samples import COMMAND_KEY, T0

PUBLIC = COMMAND_KEY.public_key().public_bytes_raw()
OTHER = Ed25519PrivateKey.from_private_bytes(b"\x09" * 32)

EVERY_TYPE: list[Command] = [
    samples.open_command(),
    samples.reserve_command(),
    samples.cancel_command(),
    samples.provision_key_command(),
    samples.update_command(),
]


def living(command: Command, lifetime: timedelta) -> Command:
    return command.model_copy(update={"expires_at": command.issued_at + lifetime})


@pytest.mark.parametrize("command", EVERY_TYPE, ids=lambda c: c.type)
def test_each_type_is_accepted_up_to_its_lifetime_bound_and_refused_beyond(command: Command) -> None:
    check_lifetime(living(command, command.MAX_LIFETIME), T0)
    with pytest.raises(CommandRefused, match=f"at most {command.MAX_LIFETIME}"):
        check_lifetime(living(command, command.MAX_LIFETIME + timedelta(seconds=1)), T0)


def test_the_bounds_fit_what_the_controller_sends() -> None:
    bounds = {c.type: c.MAX_LIFETIME for c in EVERY_TYPE}
    assert bounds == {
        "open": timedelta(minutes=10),  # HTTP opens wait at most 300 s
        "reserve": timedelta(hours=1),  # reservations send with a 5 minute ttl
        "cancel": timedelta(hours=1),
        "provision_key": timedelta(hours=1),  # the controller's answer to a birth lives 1 hour
        "update": timedelta(days=1),
    }
    assert {c.type for c in EVERY_TYPE if c.SIGNED} == {"provision_key", "update"}


def test_a_command_issued_in_the_nodes_future_is_refused_beyond_the_skew() -> None:
    command = samples.open_command()
    check_lifetime(command, command.issued_at - MAX_CLOCK_SKEW)
    with pytest.raises(CommandRefused, match="ahead of this node's clock"):
        check_lifetime(command, command.issued_at - MAX_CLOCK_SKEW - timedelta(seconds=1))


@given(st.binary(min_size=32, max_size=32), st.integers(1, 3600))
def test_a_signature_survives_the_wire_and_covers_every_field(key: bytes, seconds: int) -> None:
    command = samples.provision_key_command().model_copy(
        update={"key_hex": key.hex(), "expires_at": T0 + timedelta(seconds=seconds), "signature": None}
    )
    signed = sign_command(command, COMMAND_KEY)
    received = decode(Channel.COMMAND, encode(signed))
    assert verify_command(received, PUBLIC) == PUBLIC
    assert verify_command(received, None) == PUBLIC  # first use: any valid signature, the caller pins its key
    changed = received.model_copy(update={"expires_at": received.expires_at + timedelta(microseconds=1)})
    with pytest.raises(CommandRefused, match="does not match the command"):
        verify_command(changed, PUBLIC)


def test_signatures_by_another_key_or_none_are_refused() -> None:
    command = samples.provision_key_command()
    with pytest.raises(CommandRefused, match="trusts key"):
        verify_command(sign_command(command, OTHER), PUBLIC)
    with pytest.raises(CommandRefused, match="it is not signed"):
        verify_command(command.model_copy(update={"signature": None}), PUBLIC)


def test_the_signed_bytes_leave_out_the_signature_and_sort_keys() -> None:
    command = samples.provision_key_command()
    text = command_bytes(command).decode()
    assert '"signature"' not in text and " " not in text
    assert text.index('"command_id"') < text.index('"expires_at"') < text.index('"type"')
    assert command_bytes(command) == command_bytes(command.model_copy(update={"signature": None}))


def test_a_signature_is_an_ed25519_key_and_signature_in_base64() -> None:
    wire = decode(Channel.COMMAND, encode(samples.provision_key_command()))
    assert wire.signature is not None
    assert len(wire.signature.public_key) == 44 and len(wire.signature.sig) == 88
