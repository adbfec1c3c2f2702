"""ESP32 hardware layer: everything that needs silicon, configured from the board profile.

Only this module and main.py import machine/network/esp32. Pins come from board.json
(hardware/boards/<board>.json copied into the bundle); nothing here hard-codes one.
"""

import time

import esp32
import machine
import network
from micropython import const

from replenish.leds import pattern
from replenish.storage import FileStorage as FlashStorage  # noqa: F401  (VFS files)

_RTC_WAKE_PINS = (0, 2, 4, 12, 13, 14, 15, 25, 26, 27, 32, 33, 34, 35, 36, 37, 38, 39)
_ADC1_PINS = (32, 33, 34, 35, 36, 37, 38, 39)  # ADC2 is unusable while Wi-Fi is on
_ATTEN = {0: 0, 2: 1, 6: 2, 11: 3}  # dB -> machine.ADC.ATTN_* values
_WIFI_POLL_MS = const(50)
_WDT_MS = const(60000)


class Led:
    """A single LED ({"pin", "active_high"}) or RGB ({"r_pin","g_pin","b_pin",...})."""

    def __init__(self, profile):
        self._on = 1 if profile.get("active_high", True) else 0
        names = ("r_pin", "g_pin", "b_pin") if "r_pin" in profile else ("pin",)
        self._pins = [machine.Pin(profile[n], machine.Pin.OUT, value=1 - self._on)
                      for n in names]

    def _set(self, colour):
        if len(self._pins) == 1:
            self._pins[0].value(self._on if any(colour) else 1 - self._on)
            return
        for pin, level in zip(self._pins, colour):
            pin.value(self._on if level else 1 - self._on)

    def show(self, name):
        colour, on_ms, off_ms, repeats = pattern(name)
        if repeats == 0:  # steady (sending) or blinking in the background (setup)
            self._set(colour)
            return
        for _ in range(repeats):
            self._set(colour)
            time.sleep_ms(on_ms)
            self._set((0, 0, 0))
            time.sleep_ms(off_ms)

    def off(self):
        self._set((0, 0, 0))


class ButtonInput:
    def __init__(self, profile):
        pull = machine.Pin.PULL_UP if profile.get("pull", "up") == "up" else -1
        self.pin_number = profile["pin"]
        self._pin = machine.Pin(profile["pin"], machine.Pin.IN, pull)
        self._pressed = 0 if profile.get("active_low", True) else 1
        self._debounce_ms = profile.get("debounce_ms", 30)
        self.rtc_wake = profile.get("rtc_wake", True) and self.pin_number in _RTC_WAKE_PINS

    def held_ms(self, limit_ms):
        """How long the button stays pressed after a wake (for long press), up to limit."""
        start = time.ticks_ms()
        time.sleep_ms(self._debounce_ms)
        while self._pin.value() == self._pressed:
            held = time.ticks_diff(time.ticks_ms(), start)
            if held >= limit_ms:
                return held
            time.sleep_ms(10)
        return time.ticks_diff(time.ticks_ms(), start)

    def wake_source(self):
        """Arm ext0 (one RTC GPIO) for deep sleep: wake on the pressed level."""
        if not self.rtc_wake:
            raise ValueError("button pin %d cannot wake from deep sleep" % self.pin_number)
        esp32.wake_on_ext0(self._pin, esp32.WAKEUP_ALL_LOW if self._pressed == 0
                           else esp32.WAKEUP_ANY_HIGH)


class Battery:
    """Battery voltage on an ADC1 pin through a divider; eFuse-calibrated read_uv()."""

    def __init__(self, profile):
        pin = profile["adc_pin"]
        if profile.get("adc_unit", 1) != 1 or pin not in _ADC1_PINS:
            raise ValueError("battery must be on an ADC1 pin (ADC2 is taken by Wi-Fi)")
        self._adc = machine.ADC(machine.Pin(pin), atten=_ATTEN[profile.get("atten_db", 11)])
        self._ratio = profile.get("divider_ratio", 2.0)
        self._offset_mv = profile.get("calibration_mv", 0)

    def read_mv(self):
        total = 0
        for _ in range(4):  # four samples: ADC noise on a sleeping board
            total += self._adc.read_uv()
        return int(total // 4000 * self._ratio) + self._offset_mv


class Wifi:
    def __init__(self):
        self._sta = network.WLAN(network.WLAN.IF_STA)

    def connect(self, ssid, password, timeout_ms):
        """Join within timeout_ms; True when connected. The caller backs off on False."""
        sta = self._sta
        sta.active(True)
        if sta.isconnected():
            return True
        sta.connect(ssid, password)
        start = time.ticks_ms()
        while not sta.isconnected():
            if time.ticks_diff(time.ticks_ms(), start) > timeout_ms:
                sta.disconnect()
                return False
            time.sleep_ms(_WIFI_POLL_MS)
        return True

    def rssi(self):
        """Signal of the joined network in dBm (status heartbeats), None if unknown."""
        try:
            return int(self._sta.status("rssi"))
        except (OSError, ValueError, TypeError):
            return None

    def off(self):
        self._sta.active(False)


class AccessPoint:
    """WPA2 SoftAP for setup mode; its password is the label's setup secret."""

    def __init__(self, essid, secret):
        if not secret or len(secret) < 8:
            raise ValueError("no setup secret: setup mode refused")
        self._ap = network.WLAN(network.WLAN.IF_AP)
        self._ap.active(True)
        self._ap.config(essid=essid, password=secret, authmode=network.AUTH_WPA2_PSK,
                        max_clients=1)

    def address(self):
        return self._ap.ifconfig()[0]

    def close(self):
        self._ap.active(False)


class Rtc:
    """One record in RTC slow memory: survives deep sleep, not power loss; no flash wear.

    machine.RTC().memory() is a single blob; records share it in fixed 32-byte cells
    (index 0: queue head, 1: sensor state, 2: failed wakes), each [length, bytes...].
    """

    _CELL = 32

    def __init__(self, index):
        self._rtc = machine.RTC()
        self._at = index * self._CELL

    def read(self):
        blob = bytes(self._rtc.memory())
        if len(blob) < self._at + 1:
            return None
        n = blob[self._at]
        if n == 0 or n >= self._CELL or len(blob) < self._at + 1 + n:
            return None
        return blob[self._at + 1:self._at + 1 + n]

    def write(self, data):
        if len(data) >= self._CELL:
            raise ValueError("RTC record too large")
        blob = bytearray(self._rtc.memory())
        if len(blob) < self._at + self._CELL:
            blob.extend(bytes(self._at + self._CELL - len(blob)))
        blob[self._at] = len(data)
        blob[self._at + 1:self._at + 1 + len(data)] = data
        self._rtc.memory(bytes(blob))


class Clock:
    def ticks_ms(self):
        return time.ticks_ms()

    def sleep_us(self, n):
        time.sleep_us(n)


class Watchdog:
    def __init__(self, timeout_ms=_WDT_MS):
        self._wdt = machine.WDT(timeout=timeout_ms)

    def feed(self):
        self._wdt.feed()


def critical(fn):
    """Run fn() with interrupts off (HX711: SCK must not stay high > 60 us)."""
    state = machine.disable_irq()
    try:
        return fn()
    finally:
        machine.enable_irq(state)


def wake_reason():
    """'button', 'timer', 'pulse' (ext1) or 'power_on'."""
    if machine.reset_cause() != machine.DEEPSLEEP_RESET:
        return "power_on"
    reason = machine.wake_reason()
    if reason == machine.EXT0_WAKE:
        return "button"
    if reason == machine.EXT1_WAKE:
        return "pulse"
    if reason == machine.TIMER_WAKE:
        return "timer"
    return "power_on"


def arm_pulse_wake(pin_number, active_low=True):
    esp32.wake_on_ext1((machine.Pin(pin_number, machine.Pin.IN),),
                       esp32.WAKEUP_ALL_LOW if active_low else esp32.WAKEUP_ANY_HIGH)


def deep_sleep(timer_s):
    """Sleep until the armed pins or the timer (None: pins only)."""
    if timer_s:
        machine.deepsleep(int(timer_s * 1000))
    machine.deepsleep()


def reset():
    machine.reset()
