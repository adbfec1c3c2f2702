"""Simulated `esp32` module of MicroPython 1.29's esp32 port (ports/esp32/modesp32.c).

Every function sits under the guard modesp32.c uses (chips.py names the SOC_ flag per
chip): on an ESP32-C3 there is no wake_on_ext0/ext1, so calling one raises
AttributeError exactly as on the chip.
"""

import _sim
import chips
import machine

_C = _sim.cfg
WAKEUP_ALL_LOW = False
WAKEUP_ANY_HIGH = True
HEAP_DATA = 4  # MALLOC_CAP_8BIT
HEAP_EXEC = 1  # MALLOC_CAP_EXEC


def _pins(pins):
    ids = []
    for pin in pins:
        ids.append(machine._pin_id(pin))
    return ids


if _C["touch"]:
    def wake_on_touch(wake):
        if _C["ext0"] and (machine.wake["ext0"] or machine.wake["gpio"]):
            raise ValueError("no resources")
        machine.wake["touch"] = bool(wake)

if _C["ext0"]:
    def wake_on_ext0(pin=None, level=None):
        if _C["touch"] and machine.wake["touch"]:
            raise ValueError("no resources")
        if level is None:
            level = machine.wake["ext0"][1] if machine.wake["ext0"] else False
        if pin is None:
            machine.wake["ext0"] = None
            return
        pid = machine._pin_id(pin)
        if pid not in _C["rtc_pins"]:
            raise ValueError("invalid pin")  # RTC_IS_VALID_EXT_PIN
        machine.wake["ext0"] = (pid, 1 if level else 0)

if _C["ext1"]:
    def wake_on_ext1(pins=None, level=None):
        if level is None:
            level = machine.wake["ext1"][1] if machine.wake["ext1"] else False
        ids = machine.wake["ext1"][0] if machine.wake["ext1"] else []
        if pins is not None:
            ids = _pins(pins)
            for pid in ids:
                if pid not in _C["rtc_pins"]:
                    raise ValueError("invalid pin")
        machine.wake["ext1"] = (ids, 1 if level else 0) if ids else None

if _C["ulp"]:
    def wake_on_ulp(wake):
        if _C["ext0"] and (machine.wake["ext0"] or machine.wake["gpio"]):
            raise ValueError("no resources")
        machine.wake["ulp"] = bool(wake)


def wake_on_gpio(pins=None, level=None):
    """Always present; pins are checked when sleeping (modmachine.c machine_sleep_helper)."""
    if _C["ulp"] and machine.wake["ulp"] or _C["touch"] and machine.wake["touch"]:
        raise ValueError("no resources")
    if level is None:
        level = machine.wake["gpio"][1] if machine.wake["gpio"] else False
    ids = machine.wake["gpio"][0] if machine.wake["gpio"] else []
    if pins is not None:
        ids = _pins(pins)
    machine.wake["gpio"] = (ids, 1 if level else 0) if ids else None


if chips.has_deep_sleep_hold(_C, _sim.state.get("idf", chips.IDF_DEFAULT)):
    def gpio_deep_sleep_hold(enable):
        _sim.out["deep_sleep_hold"] = bool(enable)

if _C["raw_temperature"]:
    def raw_temperature():
        return 128  # ~ 53 C in the ESP32's uncalibrated Fahrenheit-ish units
else:
    def mcu_temperature():
        return 30


def idf_heap_info(capabilities):
    return [(240000, 120000, 110000, 100000)]


def _unsimulated(name):
    def make(*args, **kwargs):
        raise NotImplementedError("esp32.%s is not simulated" % name)
    return type(name, (), {"__init__": make})


NVS = _unsimulated("NVS")
Partition = _unsimulated("Partition")
RMT = _unsimulated("RMT")  # SOC_RMT_SUPPORTED on all four
if _C["pcnt"]:
    PCNT = _unsimulated("PCNT")
if _C["ulp_class"]:
    ULP = _unsimulated("ULP")
