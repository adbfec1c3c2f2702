"""A simulated HX711 load-cell ADC on a virtual clock (the only one: the unix port's
simulated load cell, firmware/hw/unix.py, uses it too).

The model follows the AVIA HX711 datasheet's timing: a conversion every 100 ms
(10 SPS, RATE pin low), DOUT low when ready, data shifted out on SCK rising edges
MSB first, 25-27 pulses choose the next gain, SCK high for more than 60 us powers
the chip down (and a read interrupted that way is lost), after power-up the first
conversion takes 400 ms (settling). Every timing violation is counted in
`violations`. The clock is any object with a `now_us` attribute; `dout_pin` and
`sck_pin` add the cost of one pin access so time moves while bit-banging (tests on
the unix port); the simulated ESP32 pins call dout()/sck() and charge their own cost.
Supply current (datasheet): 1.5 mA operating, < 1 uA powered down.
"""

from micropython import const

_PERIOD_US = const(100000)
_SETTLE_US = const(400000)
_POWER_DOWN_US = const(60)
_MAX_HIGH_US = const(50)
_PIN_OP_US = const(1)  # cost of one pin access, so time moves while bit-banging


class Clock:
    def __init__(self, start_us=0):
        self.now_us = start_us

    def sleep_us(self, n):
        self.now_us += n

    def sleep_ms(self, n):
        self.now_us += n * 1000

    def ticks_ms(self):
        return self.now_us // 1000

    def ticks_us(self):
        return self.now_us


class Pin:
    """An input whose level follows a script [(at_us, level), ...] on the clock."""

    def __init__(self, clock, level=1, script=None):
        self._clock = clock
        self._level = level
        self.script = list(script or [])

    def value(self, v=None):
        self._clock.now_us += _PIN_OP_US
        if v is not None:
            self._level = v
            return None
        while self.script and self.script[0][0] <= self._clock.now_us:
            self._level = self.script.pop(0)[1]
        return self._level


class _Dout:
    def __init__(self, chip):
        self._chip = chip

    def value(self, v=None):
        self._chip.clock.now_us += _PIN_OP_US
        return self._chip.dout()


class _Sck:
    def __init__(self, chip):
        self._chip = chip

    def value(self, v=None):
        self._chip.clock.now_us += _PIN_OP_US
        self._chip.sck(v)


class Hx711:
    """source(gain) -> the signed 24-bit value of the next conversion."""

    def __init__(self, clock, source):
        self.clock = clock
        self.source = source
        self.dout_pin = _Dout(self)
        self.sck_pin = _Sck(self)
        self.gain = 128
        self.violations = 0  # SCK high 50-60 us, or clocked while not ready
        self.power_downs = 0
        self.conversions = 0  # values shifted out completely
        self._sck = 0
        self._high_at = 0
        self._ready_at = clock.now_us + _SETTLE_US
        self._shift = None  # the conversion being shifted out
        self._pulses = 0
        self._gain_phase = False
        self._stray = False

    def held_down(self):
        """SCK was held high through deep sleep: the chip is powered down at boot."""
        self._sck = 1
        self._high_at = self.clock.now_us - 1000000

    def _down(self):
        return self._sck and self.clock.now_us - self._high_at > _POWER_DOWN_US

    def dout(self):
        if self._down():
            return 1
        if self._shift is None:
            if self.clock.now_us < self._ready_at:
                return 1
            self._shift = self.source(self.gain) & 0xFFFFFF
            self._pulses = 0
            self._gain_phase = False
        if self._pulses == 0:
            return 0
        if self._pulses > 24:
            return 1
        return (self._shift >> (24 - self._pulses)) & 1

    def sck(self, v):
        now = self.clock.now_us
        v = 1 if v else 0
        if v and not self._sck:
            self._high_at = now
            if self._shift is not None:
                self._pulses += 1
            elif self._gain_phase and self._pulses < 27:
                self._pulses += 1
            else:
                self._stray = True  # a pulse with no conversion ready, or a power-down
        elif not v and self._sck:
            high = now - self._high_at
            if high > _POWER_DOWN_US:  # the chip powered down; low again = reset
                self.power_downs += 1  # SCK high > 60 us: not a clock pulse
                self._shift = None
                self._gain_phase = False
                self.gain = 128
                self._ready_at = now + _SETTLE_US
            else:
                if high > _MAX_HIGH_US or self._stray:
                    self.violations += 1  # stretched pulse, or clocked while not ready
                if self._shift is not None and self._pulses == 25:
                    self.conversions += 1
                    self._shift = None
                    self._gain_phase = True
                    self._ready_at = now + _PERIOD_US
                if self._gain_phase:
                    self.gain = {25: 128, 26: 32, 27: 64}[self._pulses]
        if not v:
            self._stray = False
        self._sck = v

    def powered_down(self):
        """True while SCK has been high for more than 60 us (datasheet: power-down)."""
        return bool(self._down())
