"""HX711 24-bit load-cell ADC, bit-banged (datasheet: AVIA HX711).

Protocol: DOUT goes low when a conversion is ready; the host then gives 24 SCK
pulses, reading one data bit (MSB first, two's complement) after each rising edge,
plus 1, 2 or 3 more pulses that choose the input and gain of the *next*
conversion (A/128, B/32, A/64). SCK must not stay high longer than 50 us during a
read: high for more than 60 us powers the chip down (used by power_down()).

Pins and clock are passed in: dout.value() -> 0/1, sck.value(v), and a clock with
sleep_us(n) and ticks_ms(). `critical(fn)` runs fn with interrupts off (the ESP32
layer passes one) so no SCK pulse is stretched past 60 us. It wraps one 27-pulse shift
only, never the wait for DOUT nor a median of several conversions: at 10 samples/s
seven readings take ~700 ms, past ESP-IDF's 300 ms interrupt watchdog
(CONFIG_ESP_INT_WDT_TIMEOUT_MS), while one shift takes well under a millisecond. On the
unix port a simulated chip checks the timing.
"""

from micropython import const

_BITS = const(24)
_SIGN = const(0x800000)
_RANGE = const(0x1000000)
_PULSE_US = const(1)
_POLL_US = const(1000)
_POWER_DOWN_US = const(80)
_MAX_SAMPLES = const(15)
_GAIN_PULSES = {128: 1, 32: 2, 64: 3}


class NotReady(OSError):
    """DOUT never went low: no chip, or not powered."""


class HX711:
    def __init__(self, dout, sck, clock, gain=128, ready_timeout_ms=600, critical=None):
        if gain not in _GAIN_PULSES:
            raise ValueError("gain must be 128, 64 or 32")
        self._dout = dout
        self._sck = sck
        self._clock = clock
        self._extra = _GAIN_PULSES[gain]
        self._timeout_ms = ready_timeout_ms
        self._critical = critical
        self._samples = [0] * _MAX_SAMPLES  # reused by read_median
        self.offset = 0  # raw reading with nothing on the cell (tare)
        self.counts_per_unit = 1.0  # calibration factor: raw counts per gram (or ml)
        sck.value(0)

    def ready(self):
        return self._dout.value() == 0

    def _pulse(self):
        self._sck.value(1)
        self._clock.sleep_us(_PULSE_US)
        self._sck.value(0)
        self._clock.sleep_us(_PULSE_US)

    def read_raw(self):
        """One conversion as a signed integer; NotReady after the timeout."""
        waited_ms = 0
        while self._dout.value():  # interrupts stay on while waiting
            if waited_ms >= self._timeout_ms:
                raise NotReady("hx711 not ready")
            self._clock.sleep_us(_POLL_US)
            waited_ms += 1
        value = self._shift() if self._critical is None else self._critical(self._shift)
        if value & _SIGN:
            value -= _RANGE
        return value

    def _shift(self):
        """24 data pulses plus the gain pulses: the only part that must not stretch."""
        value = 0
        for _ in range(_BITS):
            self._sck.value(1)
            self._clock.sleep_us(_PULSE_US)
            value = (value << 1) | self._dout.value()
            self._sck.value(0)
            self._clock.sleep_us(_PULSE_US)
        for _ in range(self._extra):
            self._pulse()
        return value

    def read_median(self, n=7):
        """Median of n conversions: one knock or spike cannot move it."""
        n = max(1, min(n, _MAX_SAMPLES))
        buf = self._samples
        for i in range(n):
            buf[i] = self.read_raw()
        window = sorted(buf[:n])
        return window[n // 2]

    def tare(self, n=9):
        self.offset = self.read_median(n)
        return self.offset

    def calibrate(self, known_amount, n=9):
        """Put a known weight on the (tared) cell: sets counts_per_unit."""
        if known_amount <= 0:
            raise ValueError("known amount must be positive")
        counts = self.read_median(n) - self.offset
        if counts == 0:
            raise ValueError("no change: is the weight on the cell?")
        self.counts_per_unit = counts / known_amount
        return self.counts_per_unit

    def amount(self, n=7):
        """Calibrated amount (grams or ml) as a float."""
        return (self.read_median(n) - self.offset) / self.counts_per_unit

    def power_down(self):
        self._sck.value(0)
        self._sck.value(1)
        self._clock.sleep_us(_POWER_DOWN_US)

    def power_up(self):
        self._sck.value(0)
