"""The board around the simulated chip: what its pins see and drive.

Wired from the board profile in in.json (hardware/boards/*.json): the button (pressed
level at scripted world times), the LED (its on-time, for energy), the battery divider
on an ADC pin (voltage from the harness's discharge curve), the HX711's DOUT/SCK and a
pulse input. Unconnected inputs read their pull level.
"""

import _sim
import hx711_model

_driven = {}  # pin -> level the chip drives
_led_on = {}  # led pin -> world time it turned on
led_on_us = 0
_hx = None
_hx_pins = (None, None)
_hx_on_us = 0
_hx_since = None  # world time the HX711 was last seen powered up


class _Clock:
    @property
    def now_us(self):
        return _sim.now_us


def _board():
    return _sim.state.get("board") or {}


def _script():
    return _sim.state.get("script") or {}


def _led_pins():
    led = _board().get("led") or {}
    names = ("r_pin", "g_pin", "b_pin") if "r_pin" in led else ("pin",)
    return [led[n] for n in names if n in led], led.get("active_high", True)


def _grams_now():
    grams = 0
    for at, value in _script().get("grams", ()):
        if at <= _sim.now_us:
            grams = value
    return grams


def _hx_source(gain):
    offset, per_unit = _script().get("hx711_cal", (0, 1.0))
    return int(offset + _grams_now() * per_unit)


def setup():
    global _hx, _hx_pins, _hx_since
    hx = _board().get("hx711")
    if hx:
        _hx = hx711_model.Hx711(_Clock(), _hx_source)
        _hx_pins = (hx["dout_pin"], hx["sck_pin"])
        if str(hx["sck_pin"]) in (_sim.state.get("held") or {}) and \
                _sim.state["held"][str(hx["sck_pin"])] == 1:
            _hx.held_down()  # Pin(hold=True) kept SCK high through deep sleep
            _driven[hx["sck_pin"]] = 1
        else:
            _hx_since = _sim.now_us  # SCK floated low in deep sleep: the chip is powered
    _sim.on_end(_report)


def battery_mv():
    return _sim.state.get("battery_mv", 4000)


def battery_pin():
    battery = _board().get("battery")
    return (battery["adc_pin"], battery.get("divider_ratio", 2.0)) if battery else (None, 1)


def _pressed():
    for start, dur_ms in _script().get("presses", ()):
        if start <= _sim.now_us < start + dur_ms * 1000:
            return True
    return False


def level(pin, pull_level):
    """The level an input pin reads now."""
    button = _board().get("button") or {}
    if button.get("pin") == pin:
        active = 0 if button.get("active_low", True) else 1
        return active if _pressed() else 1 - active
    if _hx is not None and pin == _hx_pins[0]:
        return _hx.dout()
    if pin in _driven:
        return _driven[pin]
    return pull_level


def drive(pin, value):
    global led_on_us, _hx_on_us, _hx_since
    _driven[pin] = value
    pins, active_high = _led_pins()
    if pin in pins:
        on = value == (1 if active_high else 0)
        if on and pin not in _led_on:
            _led_on[pin] = _sim.now_us
        elif not on and pin in _led_on:
            led_on_us += _sim.now_us - _led_on.pop(pin)
    if _hx is not None and pin == _hx_pins[1]:
        _hx.sck(value)
        _hx_tally()


def _hx_tally():
    global _hx_on_us, _hx_since
    down = _hx.powered_down() if _hx is not None else True
    if down and _hx_since is not None:
        went_down = min(_sim.now_us, _hx._high_at + 60)  # datasheet: SCK high > 60 us
        _hx_on_us += max(0, went_down - _hx_since)
        _hx_since = None
    elif not down and _hx_since is None:
        _hx_since = _sim.now_us


def hx711():
    return _hx


def _report(out):
    global led_on_us
    for pin in list(_led_on):
        led_on_us += _sim.now_us - _led_on.pop(pin)
    out["led_on_us"] = led_on_us
    if _hx is not None:
        _hx_tally()
        on = _hx_on_us + (_sim.now_us - _hx_since if _hx_since is not None else 0)
        out["hx711_on_us"] = on
        out["hx711_violations"] = _hx.violations
        out["hx711_conversions"] = _hx.conversions
