"""One capability table (firmware/hw/chips.py) for the board validator and the ESP32
hardware layer: a profile that validates is one the firmware runs, and the wake
reasons each chip reports are decoded the same way on MicroPython."""

import json

import pytest

from devtools.mpy import run_snippet
from hardware import validate
from hardware.validate import all_boards

chips = validate.chips  # the firmware's own module, loaded by the validator


def test_the_validator_uses_the_firmware_table():
    assert set(validate.CHIPS) == set(chips.CHIPS) == {"esp32", "esp32c3", "esp32s3",
                                                       "esp32c6"}
    for name, chip in chips.CHIPS.items():
        assert validate.CHIPS[name].wake == frozenset(chip.wake_pins)
        assert validate.CHIPS[name].adc1 == frozenset(chip.adc1)


@pytest.mark.parametrize("path", all_boards(), ids=lambda p: p.stem)
def test_a_profile_that_validates_is_one_the_esp32_layer_accepts(path):
    profile = json.loads(path.read_text())
    assert validate.validate(profile, path.stem).ok
    chip = chips.get(profile["mcu"])
    # what hw/esp32.py checks or relies on at run time
    assert profile["button"]["pin"] in chip.wake_pins
    if "battery" in profile:
        assert profile["battery"]["adc_pin"] in chip.adc1
    assert chip.button_wake in (chips.WAKE_EXT0, chips.WAKE_EXT1, chips.WAKE_GPIO)


def test_the_c3_faults_of_issue_15():
    c3 = chips.get("esp32c3")
    assert c3.adc1 == tuple(range(0, 5))  # the ESP32's 32-39 list refused GPIO1
    assert 3 in c3.wake_pins and 12 not in c3.wake_pins  # not the ESP32 RTC list
    assert c3.button_wake == chips.WAKE_GPIO  # no wake_on_ext0/ext1 on the C3
    profile = json.loads((validate.BOARDS_DIR / "esp32c3-button.json").read_text())
    profile["button"]["pin"] = 12  # an ESP32 RTC pin: the validator must refuse it now
    report = validate.validate(profile, "esp32c3-button")
    assert any("GPIO12 cannot wake the esp32c3" in e for e in report.errors)


def test_gpio_wake_levels_must_agree_where_one_wake_on_gpio_serves_both():
    profile = json.loads((validate.BOARDS_DIR / "esp32c6-button.json").read_text())
    profile["pulse"] = {"pin": 5, "active_low": False}
    report = validate.validate(profile, "esp32c6-button")
    assert any("one wake_on_gpio level" in e for e in report.errors)
    profile["pulse"]["active_low"] = True
    profile["pulse"]["pin"] = 6
    assert validate.validate(profile, "esp32c6-button").ok


def test_wake_reasons_decode_per_chip_on_micropython(tmp_path):
    out = run_snippet(r"""
from hw import chips
c3, esp32, c6 = chips.get("esp32c3"), chips.get("esp32"), chips.get("esp32c6")
print(c3.wake_reason(7, 3, (3,)), c3.wake_reason(7, 3, ()), c3.wake_reason(4, 3))
print(esp32.wake_reason(2, 4), esp32.wake_reason(3, 4, (25,)), esp32.wake_reason(0, 4))
print(c6.wake_reason(7, 3, (6,)), chips.RTC_USER_MEM_BYTES)
try:
    chips.get("esp8266")
except ValueError as err:
    print("refused")
""", tmp_path).stdout.split()
    # C3 GPIO wake (7) is the button, not a power-on; ESP32 ext0 = button, ext1 = pulse;
    # an unknown cause is no wake this firmware armed; on a C6 another pin is the pulse
    assert out == ["button", "button", "timer", "button", "pulse", "None", "pulse", "2048",
                   "refused"]
