"""ESP32 hardware layer: everything that needs silicon, configured from the board profile.

Only this module and main.py import machine/network/esp32. Pins come from board.json
(hardware/boards/<board>.json copied into the bundle); what each chip allows (wake pins
and mechanism, ADC units, pad hold) comes from hw/chips.py, the table
hardware/validate.py checks profiles against. APIs a chip lacks are never called:
esp32.wake_on_ext0 does not exist on a C3 or C6; esp32.gpio_deep_sleep_hold only on
some ESP-IDF builds, so it is looked up, never assumed.
"""

import socket
import time

import esp32
import machine
import network
from micropython import const

from hw import chips
from replenish import power
from replenish.client import Client
from replenish.hal import Hardware
from replenish.leds import pattern
from replenish.storage import FileStorage
from replenish.wake import RTC_WIFI
from replenish.wificache import WifiCache

_ATTEN = {0: 0, 2: 1, 2.5: 1, 6: 2, 11: 3}  # dB -> machine.ADC.ATTN_* values
_POLL_MS = const(50)
_JOIN_MS = const(15000)  # a full join: scan, associate, DHCP
_FAST_JOIN_MS = const(1500)  # known access point and channel, static IP: or fall back
_RTC_CELL = const(32)
# Join failures that more waiting will not cure (network_wlan.c status(): the
# disconnect reason once the driver gave up)
_GIVE_UP = (network.STAT_NO_AP_FOUND, network.STAT_WRONG_PASSWORD)


class Led:
    """A single LED ({"pin", "active_high"}) or RGB ({"r_pin","g_pin","b_pin",...})."""

    def __init__(self, profile):
        self._on = 1 if profile.get("active_high", True) else 0
        names = ("r_pin", "g_pin", "b_pin") if "r_pin" in profile else ("pin",)
        self._pins = [machine.Pin(profile[n], machine.Pin.OUT, value=1 - self._on)
                      for n in names]
        self.last = None
        self._owed_ms = 0

    def _set(self, colour):
        if len(self._pins) == 1:
            self._pins[0].value(self._on if any(colour) else 1 - self._on)
            return
        for pin, level in zip(self._pins, colour):
            pin.value(self._on if level else 1 - self._on)

    def show(self, name):
        colour, on_ms, off_ms, repeats = pattern(name)
        if repeats == 0:  # steady (sending) or blinking in the background (setup)
            self.last = name
            self._owed_ms = 0
            self._set(colour)
            return
        self.last = None
        if self._owed_ms:  # the previous blink's dark gap, so the two stay apart
            time.sleep_ms(self._owed_ms)
        for i in range(repeats):
            self._set(colour)
            time.sleep_ms(on_ms)
            self._set((0, 0, 0))
            if i < repeats - 1:
                time.sleep_ms(off_ms)
        # no dark wait after the last blink unless another pattern follows: the chip
        # would spend it awake before sleeping
        self._owed_ms = off_ms

    def off(self):
        self.last = None
        self._set((0, 0, 0))


class Battery:
    """Battery voltage on an ADC1 pin through a divider; eFuse-calibrated read_uv()."""

    def __init__(self, profile, chip):
        pin = profile["adc_pin"]
        if profile.get("adc_unit", 1) != 1 or pin not in chip.adc1:
            raise ValueError("battery must be on an ADC1 pin of the %s" % chip.name)
        self._adc = machine.ADC(machine.Pin(pin), atten=_ATTEN[profile.get("atten_db", 11)])
        self._ratio = profile.get("divider_ratio", 2.0)
        self._offset_mv = profile.get("calibration_mv", 0)

    def read_mv(self):
        total = 0
        for _ in range(4):  # four samples: ADC noise on a sleeping board
            total += self._adc.read_uv()
        return int(total // 4000 * self._ratio) + self._offset_mv


class Rtc:
    """One record in RTC slow memory: survives deep sleep, not power loss; no flash wear.

    machine.RTC().memory() is a single blob (at most chips.RTC_USER_MEM_BYTES); records
    share it in fixed 32-byte cells, each [length, bytes...] (replenish/wake.py RTC_*).
    """

    def __init__(self, index):
        self._rtc = machine.RTC()
        self._at = index * _RTC_CELL

    def read(self):
        blob = self._rtc.memory()
        if len(blob) < self._at + 1:
            return None
        n = blob[self._at]
        if n == 0 or n >= _RTC_CELL or len(blob) < self._at + 1 + n:
            return None
        return bytes(blob[self._at + 1:self._at + 1 + n])

    def write(self, data):
        if len(data) >= _RTC_CELL:
            raise ValueError("RTC record too large")
        blob = bytearray(self._rtc.memory())
        if len(blob) < self._at + _RTC_CELL:
            blob.extend(bytes(self._at + _RTC_CELL - len(blob)))
        blob[self._at] = len(data)
        blob[self._at + 1:self._at + 1 + len(data)] = data
        self._rtc.memory(blob)


class Clock:
    def ticks_ms(self):
        return time.ticks_ms()

    def sleep_us(self, n):
        time.sleep_us(n)


def _out_pin(number, value, hold):
    """An output pin; hold=True latches its level through deep sleep, hold=False lets
    go of a latch from before the sleep (Pin.init's `hold`, ports/esp32/machine_pin.c;
    the stubs omit it)."""
    return machine.Pin(number, machine.Pin.OUT, value=value, hold=hold)  # type: ignore[call-arg]


def _critical(fn):
    """fn() with interrupts off: bounded by the caller (one HX711 shift, < 1 ms)."""
    state = machine.disable_irq()
    try:
        return fn()
    finally:
        machine.enable_irq(state)


class Wifi:
    """Station join: the cached access point (BSSID, channel) and IP configuration from
    the last good join first (no scan, no DHCP), the full join when that fails."""

    def __init__(self, cache, feed):
        self._sta = network.WLAN(network.WLAN.IF_STA)
        self._cache = cache
        self._feed = feed

    def _wait(self, timeout_ms):
        sta = self._sta
        start = time.ticks_ms()
        while not sta.isconnected():
            if time.ticks_diff(time.ticks_ms(), start) > timeout_ms:
                return False
            if sta.status() in _GIVE_UP:
                return False  # no point waiting out the timeout
            self._feed()
            time.sleep_ms(_POLL_MS)
        return True

    def _fast(self, ssid, password, known):
        sta = self._sta
        sta.ifconfig(known.ifconfig())  # static: DHCP client stopped
        # connect() with arguments writes a fresh station config (channel 0), so the
        # channel goes in after it, then a bare connect() joins with it
        # (ports/esp32/network_wlan.c: network_wlan_connect, config(channel=)).
        sta.connect(ssid, password, bssid=known.bssid)
        sta.disconnect()
        sta.config(channel=known.channel)
        sta.connect()
        if self._wait(_FAST_JOIN_MS):
            return True
        sta.disconnect()
        # "dhcp" restarts the DHCP client (ports/esp32/network_common.c esp_ifconfig);
        # the stubs know only the tuple form
        sta.ifconfig("dhcp")  # type: ignore[call-overload]
        return False

    def _full(self, ssid, password):
        """Scan for the strongest access point of that name (its BSSID and channel are
        what the next wake needs), join it, lease an address."""
        sta = self._sta
        best = None
        try:
            for net in sta.scan():  # (ssid, bssid, channel, RSSI, security, hidden)
                if net[0] == ssid.encode() and (best is None or net[3] > best[3]):
                    best = net
        except OSError:
            best = None
        self._feed()
        if best is not None:
            sta.connect(ssid, password, bssid=best[1])
        else:
            sta.connect(ssid, password)  # hidden network: let the driver find it
        if not self._wait(_JOIN_MS):
            sta.disconnect()
            return False
        if best is not None:
            self._cache.save(best[1], best[2], sta.ifconfig())
        return True

    def connect(self, ssid, password):
        sta = self._sta
        sta.active(True)
        if sta.isconnected():
            return True
        known = self._cache.load()
        if known is not None:
            try:
                if self._fast(ssid, password, known):
                    return True
            except OSError:
                pass  # any refusal of the shortcut: the full join below
            self._cache.forget()
        return self._full(ssid, password)

    def rssi(self):
        """Signal of the joined network in dBm (status heartbeats), None if unknown."""
        try:
            return int(self._sta.status("rssi"))
        except (OSError, ValueError, TypeError):
            return None


class Esp32Hardware(Hardware):
    """The board profile (bundle/board.json) on its chip (profile "mcu")."""

    def __init__(self, bundle, wdt):
        import json

        self._wdt = wdt
        with open(bundle + "/board.json") as f:
            board = json.load(f)
        self.chip = chip = chips.get(board.get("mcu", "esp32"))
        self.storage = FileStorage(bundle + "/state")
        self.led = Led(board["led"])
        self.clock = Clock()
        self._button = board["button"]
        pull = machine.Pin.PULL_UP if self._button.get("pull", "up") == "up" else -1
        self._pressed = 0 if self._button.get("active_low", True) else 1
        self._button_pin = machine.Pin(self._button["pin"], machine.Pin.IN, pull)
        self.battery = Battery(board["battery"], chip) if "battery" in board else None
        self._hx711 = board.get("hx711")
        if self._hx711 is not None:  # keep the HX711 powered down until it is needed
            _out_pin(self._hx711["sck_pin"], 1, False)
        self._wifi = None
        self._ap = None

    def rtc(self, index):
        return Rtc(index)

    def feed(self):
        self._wdt.feed()

    def wake_reason(self):
        if machine.reset_cause() != machine.DEEPSLEEP_RESET:
            return power.WAKE_POWER_ON
        pins = ()
        wake_pins = getattr(machine, "wake_pins", None)
        if wake_pins is not None:
            pins = wake_pins()
        reason = self.chip.wake_reason(machine.wake_reason(), self._button["pin"], pins)
        # A deep-sleep wake this firmware did not arm: quiet, like a timer (no boot
        # event, the queue retried), never mistaken for a power-on.
        return reason or power.WAKE_TIMER

    def held_ms(self, limit_ms):
        """Time the button has been held since the wake, up to limit_ms. The chip took
        time.ticks_ms() (ROM, bootloader after it, MicroPython, imports: ~200-300 ms) to
        get here with the button already down, so that time counts as held."""
        time.sleep_ms(self._button.get("debounce_ms", 30))
        while self._button_pin.value() == self._pressed:
            if time.ticks_ms() >= limit_ms:
                break
            time.sleep_ms(10)
        return time.ticks_ms()

    def connect(self, wifi, host, port):
        if wifi is None:
            return None
        if self._wifi is None:
            self._wifi = Wifi(WifiCache(Rtc(RTC_WIFI)), self.feed)
        if not self._wifi.connect(wifi["ssid"], wifi.get("password", "")):
            return None
        addr = socket.getaddrinfo(host, port)[0][-1]
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        return Client(sock, addr, tick=self.feed)

    def rssi(self):
        return None if self._wifi is None else self._wifi.rssi()

    def forget_network(self):
        WifiCache(Rtc(RTC_WIFI)).forget()

    def load_cell(self, hx711):
        from replenish.hx711 import HX711

        sck = _out_pin(hx711["sck_pin"], 1, False)
        dout = machine.Pin(hx711["dout_pin"], machine.Pin.IN)
        return HX711(dout, sck, self.clock, hx711.get("gain", 128), critical=_critical)

    def setup_listener(self, essid, secret, port):
        if not secret or len(secret) < 8:
            raise ValueError("no setup secret: setup mode refused")
        ap = network.WLAN(network.WLAN.IF_AP)
        ap.active(True)
        ap.config(essid=essid, password=secret, authmode=network.AUTH_WPA2_PSK,
                  max_clients=1)
        self._ap = ap
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(socket.getaddrinfo(ap.ifconfig()[0], port)[0][-1])
        listener.listen(1)
        return listener

    def setup_done(self):
        if self._ap is not None:
            self._ap.active(False)
            self._ap = None

    def _arm(self, board):
        chip = self.chip
        level = esp32.WAKEUP_ALL_LOW if self._pressed == 0 else esp32.WAKEUP_ANY_HIGH
        button = self._button["pin"]
        if button not in chip.wake_pins:
            raise ValueError("button GPIO%d cannot wake the %s" % (button, chip.name))
        gpio_pins = []
        if chip.button_wake == chips.WAKE_EXT0:
            esp32.wake_on_ext0(self._button_pin, level)
        else:
            gpio_pins.append(self._button_pin)
        pulse = board.get("pulse")
        if pulse is not None:
            pin = machine.Pin(pulse["pin"], machine.Pin.IN)
            pulse_level = esp32.WAKEUP_ALL_LOW if pulse.get("active_low", True) \
                else esp32.WAKEUP_ANY_HIGH
            if chip.pulse_wake == chips.WAKE_EXT1:
                esp32.wake_on_ext1((pin,), pulse_level)
            else:
                gpio_pins.append(pin)  # wake_on_gpio has one level for all its pins
        if gpio_pins:
            esp32.wake_on_gpio(gpio_pins, level)

    def _hold_power_down(self):
        """The HX711 stays powered down (SCK high) through deep sleep: a pad that is
        not held floats when the digital domain powers off."""
        _out_pin(self._hx711["sck_pin"], 1, True)  # a hold_pins pin (hardware/validate)
        # only some ESP-IDF builds have it (hw/chips.py [mp-c]); where they do, digital
        # pads need it on top of the pin's own hold
        hold_all = getattr(esp32, "gpio_deep_sleep_hold", None)
        if hold_all is not None:
            hold_all(True)

    def sleep(self, timer_s, board):
        self._arm(board)
        if self._hx711 is not None:
            self._hold_power_down()
        self.feed()
        if timer_s:
            machine.deepsleep(int(timer_s * 1000))
        machine.deepsleep()

    def reset(self):
        machine.reset()
