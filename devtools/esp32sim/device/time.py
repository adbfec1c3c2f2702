"""Simulated `time`: the chip's clocks on the simulation's virtual clock.

ticks_* count from this boot (esp_timer, reset on every wake); time() is the RTC,
which keeps running through deep sleep and restarts at 0 after a power loss
(MicroPython's esp32 epoch, 2000-01-01, with no network time). Sleeping costs no real
time; each call that reads the clock costs a few microseconds of virtual time so a
busy-wait loop ends.
"""

import sys

import _sim

_path = sys.path[:]
sys.path.clear()
import time as _real  # noqa: E402  (the built-in, behind this file on the path)
sys.path.extend(_path)

ticks_add = _real.ticks_add
ticks_diff = _real.ticks_diff
gmtime = _real.gmtime
localtime = _real.localtime
mktime = _real.mktime
_PERIOD = 1 << 30  # MICROPY_PY_TIME_TICKS_PERIOD


def ticks_us():
    _sim.call()
    return _sim.ticks_us() % _PERIOD


def ticks_ms():
    _sim.call()
    return (_sim.ticks_us() // 1000) % _PERIOD


def ticks_cpu():
    return ticks_us()


def sleep_us(us):
    _sim.advance(max(0, us))


def sleep_ms(ms):
    _sim.advance(max(0, ms) * 1000)


def sleep(s):
    _sim.advance(int(max(0, s) * 1000000))


def _rtc_us():
    return _sim.now_us - _sim.state.get("rtc_zero_us", 0) + _sim.out["rtc_offset_us"]


def time():
    _sim.call()
    return _rtc_us() // 1000000


def time_ns():
    _sim.call()
    return _rtc_us() * 1000
