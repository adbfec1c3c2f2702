"""The simulated chips expose what MicroPython 1.29's esp32 port exposes per chip: an
API a chip lacks is an AttributeError there, a pin it lacks or cannot use a ValueError
with the port's message (devtools/esp32sim/device/chips.py names each source)."""

import pytest

from devtools.esp32sim.harness import snippet_device

PROBE = """
import esp32, machine, network
names = ("wake_on_ext0", "wake_on_ext1", "wake_on_gpio", "wake_on_touch", "wake_on_ulp",
         "gpio_deep_sleep_hold", "raw_temperature", "mcu_temperature", "ULP", "PCNT", "RMT")
print("esp32", sorted(n for n in names if hasattr(esp32, n)))
print("machine", sorted(n for n in ("TouchPad", "DAC", "I2CTarget", "EXT0_WAKE", "GPIO_WAKE")
                        if hasattr(machine, n)))
print("reasons", machine.EXT0_WAKE, machine.EXT1_WAKE, machine.TIMER_WAKE)
print("net", network.WLAN.IF_STA, network.STAT_GOT_IP, network.STAT_WRONG_PASSWORD)
machine.deepsleep(1000)
"""

EXPECTED = {
    "esp32": ["PCNT", "RMT", "ULP", "raw_temperature", "wake_on_ext0",
              "wake_on_ext1", "wake_on_gpio", "wake_on_touch", "wake_on_ulp"],
    "esp32c3": ["RMT", "mcu_temperature", "wake_on_gpio"],
    "esp32s3": ["PCNT", "RMT", "ULP", "mcu_temperature",
                "wake_on_ext0", "wake_on_ext1", "wake_on_gpio", "wake_on_touch", "wake_on_ulp"],
    "esp32c6": ["PCNT", "RMT", "mcu_temperature", "wake_on_ext1", "wake_on_gpio",
                "wake_on_ulp"],
}
MACHINE = {"esp32": ["DAC", "EXT0_WAKE", "TouchPad"], "esp32c3": ["EXT0_WAKE", "I2CTarget"],
           "esp32s3": ["EXT0_WAKE", "I2CTarget", "TouchPad"],
           "esp32c6": ["EXT0_WAKE", "I2CTarget"]}


@pytest.mark.parametrize("chip", sorted(EXPECTED))
def test_each_chip_exposes_what_its_port_build_has(chip, tmp_path):
    run = snippet_device(chip, PROBE, tmp_path).boot()
    assert run.end == "deepsleep", run.out
    assert f"esp32 {EXPECTED[chip]}" in run.stdout
    assert f"machine {MACHINE[chip]}" in run.stdout  # no chip names a GPIO wake (7)
    assert "reasons 2 3 4" in run.stdout
    assert "net 0 1010 202" in run.stdout


@pytest.mark.parametrize("idf, chips_with_it", [
    ((5, 5, 2), []),  # MicroPython 1.29's CI build: SOC_GPIO_SUPPORT_HOLD_IO_IN_DSLP gone
    ((5, 5, 1), ["esp32", "esp32c3", "esp32s3"]),  # defined; the C6 holds single pads
])
def test_gpio_deep_sleep_hold_depends_on_the_idf_release(idf, chips_with_it, tmp_path):
    probe = "import esp32, machine\nprint('hold', hasattr(esp32, 'gpio_deep_sleep_hold'))\n" \
            "machine.deepsleep(1000)\n"
    found = [chip for chip in sorted(EXPECTED)
             if "hold True" in snippet_device(chip, probe, tmp_path / chip, idf=idf).boot().stdout]
    assert found == chips_with_it


def _error(chip, source, tmp_path, **kwargs):
    run = snippet_device(chip, source, tmp_path, **kwargs).boot()
    assert run.end == "hung", run.out  # an exception leaves the chip in the REPL, awake
    return run.out["error"].strip().splitlines()[-1]


@pytest.mark.parametrize("chip, source, error", [
    ("esp32c3", "import esp32, machine\nesp32.wake_on_ext0(machine.Pin(3), 0)",
     "AttributeError: module 'esp32' has no attribute 'wake_on_ext0'"),
    ("esp32", "import esp32\nesp32.gpio_deep_sleep_hold(True)",
     "AttributeError: module 'esp32' has no attribute 'gpio_deep_sleep_hold'"),
    ("esp32", "import machine\nmachine.Pin(34, machine.Pin.OUT)",
     "ValueError: pin can only be input"),
    ("esp32", "import esp32, machine\nesp32.wake_on_ext0(machine.Pin(5), 0)",
     "ValueError: invalid pin"),
    ("esp32c3", "import machine\nmachine.ADC(machine.Pin(34))", "ValueError: invalid pin"),
    ("esp32c3", "import machine\nmachine.ADC(machine.Pin(6))", "ValueError: invalid pin"),
    ("esp32c6", "import machine\nmachine.Pin(12)", "ValueError: invalid pin"),
    ("esp32", "import esp32, machine\nesp32.wake_on_gpio([machine.Pin(4)], 0)\n"
              "machine.deepsleep()",
     "ValueError: DEEPSLEEP with gpio pins not supported on this chip"),
    ("esp32s3", "import esp32, machine\nesp32.wake_on_gpio([machine.Pin(4)], 0)\n"
                "machine.deepsleep()",
     "ValueError: DEEPSLEEP with gpio pins not supported on this chip"),
    ("esp32c3", "import esp32, machine\nesp32.wake_on_gpio([machine.Pin(7)], 0)\n"
                "machine.deepsleep()", "ValueError: wake-up pin not supported"),
    ("esp32", "import machine\nmachine.RTC().memory(bytes(2049))",
     "ValueError: buffer too long"),
])
def test_what_a_chip_lacks_fails_as_on_the_chip(chip, source, error, tmp_path):
    last = _error(chip, source, tmp_path)
    # the interpreter words the AttributeError itself (py/runtime.c mp_load_attr)
    assert last == error


def test_adc2_is_unusable_while_wifi_runs_on_the_esp32(tmp_path):
    source = """
import machine, network
adc = machine.ADC(machine.Pin(4))  # ADC2 channel 0
print("before", adc.read_uv())
network.WLAN(network.WLAN.IF_STA).active(True)
adc.read_uv()
"""
    assert _error("esp32", source, tmp_path) == "OSError: 263"  # ESP_ERR_TIMEOUT
