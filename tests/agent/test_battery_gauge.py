"""The real battery path: gpiozero's MCP3008 class over the mock factory's SPI, talking to an emulated chip."""

from typing import Any

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory, MockSPIDevice

from node_agent.board import Mcp3xxxBattery
from node_agent.hardware import Mcp3xxxGauge
from schemas import PowerSource

SCLK, MOSI, MISO, CE0 = 11, 10, 9, 8  # SPI0 as gpiozero maps it


class EmulatedMcp3008(MockSPIDevice):  # type: ignore[misc]  # gpiozero is untyped
    """The chip side of MCP3008: start, single/diff, 3 channel bits, sample, null bit, 10 result bits."""

    def __init__(self, factory: MockFactory, vref: float) -> None:
        super().__init__(SCLK, MOSI, MISO, CE0, pin_factory=factory)
        self.vref = vref
        self.volts = [0.0] * 8
        self.state = "idle"
        self.rx_buf: list[int] = []

    def on_start(self) -> None:
        super().on_start()
        self.state = "idle"

    def on_bit(self) -> None:
        if self.state == "idle":
            if self.rx_buf[-1]:  # start bit
                self.state, self.rx_buf = "mode", []
        elif self.state == "mode":
            self.state, self.rx_buf = ("single" if self.rx_buf[-1] else "diff"), []
        elif self.state in ("single", "diff") and len(self.rx_buf) == 3:
            value = self.volts[self.rx_word()]
            self.tx_word(int(value / self.vref * 1023), 12)  # sample clock and null bit, then 10 result bits
            self.state = "result"
        elif self.state == "result" and not self.tx_buf:
            self.state, self.rx_buf = "idle", []


@pytest.fixture
def factory(monkeypatch: pytest.MonkeyPatch) -> Any:
    """A MockFactory that is also gpiozero's default: its software SPI builds its pins on the default factory."""
    mock = MockFactory()
    monkeypatch.setattr(Device, "pin_factory", mock)
    return mock


def test_battery_volts_and_charge_come_from_the_adc_channel(factory: Any) -> None:
    chip = EmulatedMcp3008(factory, vref=3.3)
    config = Mcp3xxxBattery(channel=2, vref_v=3.3, divider=5.0, empty_v=11.8, full_v=13.4, charger_pin=14)
    gauge = Mcp3xxxGauge(config, factory)
    chip.volts[2] = 12.6 / 5.0  # 12.6 V battery behind the 1:5 divider
    factory.pin(14).drive_low()  # no charger
    reading = gauge.read()
    assert reading.voltage_v == pytest.approx(12.6, abs=0.02)
    assert reading.soc_pct == pytest.approx(50, abs=1.5)
    assert (reading.power_source, reading.charging) == (PowerSource.BATTERY, False)
    factory.pin(14).drive_high()  # shore power back
    assert gauge.read().power_source is PowerSource.SHORE and gauge.read().charging
    chip.volts[2] = 3.3
    assert gauge.read().soc_pct == 100
    gauge.close()
