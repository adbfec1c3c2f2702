"""ESP32 hardware layer: LED, button, battery ADC and flash storage from a board profile.

Only this module and main.py may import machine. Pins come from the board profile
(hardware/boards/*.json, copied into the bundle as board.json).
"""

import time

import machine
from micropython import const
from replenish.storage import FileStorage as FlashStorage  # noqa: F401  (VFS files)

_BLINKS = {  # pattern -> (on_ms, off_ms, repeats)
    "ordered": (600, 200, 1),
    "already_ordered": (150, 150, 2),
    "not_configured": (150, 150, 3),
    "not_claimed": (80, 80, 6),
    "error": (40, 160, 10),
    "recorded": (30, 0, 1),
}
_ADC_MAX = const(4095)
_ADC_FULL_SCALE_MV = const(3100)  # 11 dB attenuation, approximate


class Led:
    def __init__(self, profile):
        self._on = 1 if profile.get("active_high", True) else 0
        self._pin = machine.Pin(profile["pin"], machine.Pin.OUT, value=1 - self._on)

    def show(self, pattern):
        on_ms, off_ms, repeats = _BLINKS.get(pattern, _BLINKS["error"])
        for _ in range(repeats):
            self._pin.value(self._on)
            time.sleep_ms(on_ms)
            self._pin.value(1 - self._on)
            time.sleep_ms(off_ms)


class ButtonInput:
    def __init__(self, profile):
        pull = machine.Pin.PULL_UP if profile.get("pull", "up") == "up" else None
        self._pin = machine.Pin(profile["pin"], machine.Pin.IN, pull)
        self._pressed = 0 if profile.get("active_low", True) else 1
        self._debounce_ms = profile.get("debounce_ms", 30)

    def wait_press(self):
        """Block until a debounced press-and-release."""
        while True:
            while self._pin.value() != self._pressed:
                time.sleep_ms(10)
            time.sleep_ms(self._debounce_ms)
            if self._pin.value() == self._pressed:
                while self._pin.value() == self._pressed:
                    time.sleep_ms(10)
                return


class Battery:
    def __init__(self, profile):
        self._adc = machine.ADC(machine.Pin(profile["adc_pin"]))
        self._adc.atten(machine.ADC.ATTN_11DB)
        self._ratio = profile.get("divider_ratio", 2.0)

    def read_mv(self):
        if hasattr(self._adc, "read_uv"):
            pin_mv = self._adc.read_uv() // 1000
        else:
            pin_mv = self._adc.read() * _ADC_FULL_SCALE_MV // _ADC_MAX
        return int(pin_mv * self._ratio)

