"""A real board profile where no GPIO pin library loads: one error naming pin_factory and why each was passed over."""

import warnings

import pytest
from gpiozero import BadPinFactory, Device, PinFactoryFallback

from node_agent.board import BoardProfile, shipped_profile
from node_agent.hardware import Hardware, HardwareError


def no_pin_library() -> None:
    """What gpiozero does on a machine with none of its pin libraries (lgpio, RPi.GPIO, pigpio, native)."""
    warnings.warn(PinFactoryFallback("Falling back from lgpio: No module named 'lgpio'"), stacklevel=1)
    warnings.warn(PinFactoryFallback("Falling back from native: unable to locate Pi revision"), stacklevel=1)
    raise BadPinFactory("Unable to load any default pin factory!")


def test_no_usable_pin_library_is_one_line_naming_pin_factory_and_each_library(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(Device, "pin_factory", None)
    monkeypatch.setattr(Device, "_default_pin_factory", staticmethod(no_pin_library))
    with pytest.raises(HardwareError) as raised:
        Hardware(BoardProfile.from_toml(shipped_profile("pi4-locker-8")))
    message = str(raised.value)
    assert "\n" not in message
    assert 'pin_factory = "default"' in message
    assert "(lgpio: No module named 'lgpio'; native: unable to locate Pi revision)" in message
    assert "pip install 'lockerfleet[agent]'" in message and "gpio group" in message
