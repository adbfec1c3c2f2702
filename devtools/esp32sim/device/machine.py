"""Simulated `machine` of MicroPython 1.29's esp32 port, for the chip in in.json.

Names and checks follow ports/esp32/modmachine.c, machine_pin.c, machine_adc.c,
machine_rtc.c, machine_wdt.c and extmod/modmachine.c (see chips.py for each per-chip
fact). Classes the port has but the simulation does not model raise
NotImplementedError when constructed; what a chip lacks is absent (AttributeError).
"""

import _board
import _sim
import chips

_C = _sim.cfg

# Reset causes and wake reasons (modmachine.c MICROPY_PY_MACHINE_EXTRA_GLOBALS).
HARD_RESET = chips.HARD_RESET
PWRON_RESET = chips.PWRON_RESET
WDT_RESET = chips.WDT_RESET
DEEPSLEEP_RESET = chips.DEEPSLEEP_RESET
SOFT_RESET = chips.SOFT_RESET
SLEEP = 2  # MACHINE_WAKE_SLEEP
DEEPSLEEP = 4  # MACHINE_WAKE_DEEPSLEEP
PIN_WAKE = chips.WAKE_EXT0
EXT0_WAKE = chips.WAKE_EXT0
EXT1_WAKE = chips.WAKE_EXT1
TIMER_WAKE = chips.WAKE_TIMER
TOUCHPAD_WAKE = chips.WAKE_TOUCHPAD
ULP_WAKE = chips.WAKE_ULP

# machine_rtc_config (machine_rtc.h): wake sources armed for the next sleep.
wake = {"ext0": None, "ext1": None, "gpio": None, "touch": False, "ulp": False}


def _pin_id(pin):
    """machine_pin_find(): a Pin, or an int naming a pin this chip has."""
    if isinstance(pin, Pin):
        return pin.id
    if isinstance(pin, int) and pin in _C["pins"]:
        return pin
    raise ValueError("invalid pin")


class Pin:
    # machine_pin.c locals: GPIO_MODE_* / GPIO_PULL_* / GPIO_INTR_* / GPIO_DRIVE_CAP_*
    IN = 1
    OUT = 3
    OPEN_DRAIN = 7
    PULL_UP = 2
    PULL_DOWN = 1
    IRQ_RISING = 1
    IRQ_FALLING = 2
    WAKE_LOW = 4
    WAKE_HIGH = 5
    DRIVE_0 = 0
    DRIVE_1 = 1
    DRIVE_2 = 2
    DRIVE_3 = 3
    _all = {}

    def __new__(cls, id, *args, **kwargs):
        pid = _pin_id(id)
        self = Pin._all.get(pid)
        if self is None:
            self = object.__new__(cls)
            self.id = pid
            self.mode = None
            self.pull = None
            self.level = 0
            self.hold = False
            Pin._all[pid] = self
        return self

    def __init__(self, id, mode=None, pull=-1, *, value=None, drive=None, hold=None):
        if mode is not None or pull != -1 or value is not None or hold is not None:
            self.init(mode, pull, value=value, drive=drive, hold=hold)

    def init(self, mode=None, pull=-1, *, value=None, drive=None, hold=None):
        _sim.call()
        if self.hold and hold is None:
            # gpio_hold_en: the pad keeps its level and config until hold is released
            return
        if value is not None and not self.hold:
            self.level = 1 if value else 0
        if mode is not None:
            if mode & 2 and self.id in _C["input_only"]:
                raise ValueError("pin can only be input")  # GPIO_FIRST_NON_OUTPUT
            if self.id in _C.get("flash_pins", ()):
                # the pad leaves the flash bus; the next cache miss faults (estimate of
                # the effect: a panic and a reset, ESP_RST_PANIC -> HARD_RESET)
                _sim.log("GPIO%d is a flash pin: panic" % self.id)
                _sim.halt("panic", panic="GPIO%d taken from the SPI flash" % self.id)
            self.mode = mode
        if pull != -1:
            self.pull = pull
        if self.mode is not None and self.mode & 2:
            _board.drive(self.id, self.level)
        if hold is not None and self.id not in _C["input_only"]:
            self.hold = bool(hold)  # machine_pin.c: only GPIO_IS_VALID_OUTPUT_GPIO pins

    def _pull_level(self):
        return 1 if self.pull == Pin.PULL_UP else 0

    def value(self, v=None):
        _sim.call()
        if v is None:
            if self.mode is not None and self.mode & 2:
                return self.level
            return _board.level(self.id, self._pull_level())
        if self.hold:
            return None  # a held pad ignores writes (gpio_hold_en)
        self.level = 1 if v else 0
        if self.mode is not None and self.mode & 2:
            _board.drive(self.id, self.level)
        return None

    __call__ = value

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)

    def toggle(self):
        self.value(1 - self.level)

    def irq(self, handler=None, trigger=3, wake=None):
        if trigger in (Pin.WAKE_LOW, Pin.WAKE_HIGH) and wake is not None:
            if not isinstance(wake, int) or wake < 2 or wake > 7:
                raise ValueError("bad wake value")
            if self.id not in _C["rtc_pins"]:
                raise ValueError("invalid pin for wake")
            if _C["ext0"]:
                if wake_cfg_ext0() not in (None, self.id):
                    raise ValueError("no resources")
                globals()["wake"]["ext0"] = (self.id, 0 if trigger == Pin.WAKE_LOW else 1)
            return None
        raise NotImplementedError("Pin.irq handlers are not simulated")

    def __repr__(self):
        return "Pin(%d)" % self.id


def wake_cfg_ext0():
    return wake["ext0"][0] if wake["ext0"] else None


class ADC:
    # machine_adc.c class constants (ADC_ATTEN_DB_*; widths per SOC_ADC_RTC_*_BITWIDTH)
    ATTN_0DB = 0
    ATTN_2_5DB = 1
    ATTN_6DB = 2
    ATTN_11DB = 3
    WIDTH_12BIT = 12
    _READ_US = 40  # one oneshot conversion + calibration, estimate

    def __init__(self, pin, *, atten=3):
        gpio = _pin_id(pin)
        if gpio not in _C["adc"]:
            raise ValueError("invalid pin")  # madc_search_helper found nothing
        if atten < 0 or atten > 3:
            raise ValueError("invalid attenuation")
        self.gpio = gpio
        self.unit = _C["adc"][gpio][0]
        self.atten = atten

    def atten(self, atten):
        self.atten = atten

    def _uv(self):
        _sim.advance(self._READ_US)
        if self.unit == 2 and _C["adc2_blocked_by_wifi"] and _sim.radio not in ("off", "boot"):
            raise OSError(263)  # ESP_ERR_TIMEOUT: ADC2 busy with Wi-Fi
        pin, ratio = _board.battery_pin()
        if pin != self.gpio:
            return 0
        # 11 dB range tops out near 3.1 V (IDF adc docs); the divider halves the cell.
        return min(int(_board.battery_mv() * 1000 / ratio), 3100000)

    def read_uv(self):
        return self._uv()

    def read(self):
        return min(4095, self._uv() * 4095 // 3100000)

    def read_u16(self):
        raw = self.read()
        return raw << 4 | raw >> 8


if _sim.state.get("chip") == "esp32":
    # SOC_ADC_RTC_MIN_BITWIDTH 9 on the classic ESP32 only (machine_adc.c WIDTH_9_10_11)
    ADC.WIDTH_9BIT = 9
    ADC.WIDTH_10BIT = 10
    ADC.WIDTH_11BIT = 11


class RTC:
    """machine_rtc.c: a singleton; memory() is RTC_NOINIT user memory (2048 bytes)."""

    def datetime(self, dt=None):
        if dt is None:
            raise NotImplementedError("RTC.datetime() read is not simulated")
        raise NotImplementedError("setting the RTC is not simulated")

    def init(self, dt):
        self.datetime(dt)

    def memory(self, data=None):
        _sim.call()
        if data is None:
            return bytes.fromhex(_sim.out["rtc_mem"])
        data = bytes(data)
        if len(data) > chips.RTC_USER_MEM_MAX:
            raise ValueError("buffer too long")
        _sim.out["rtc_mem"] = data.hex()
        return None


class WDT:
    """machine_wdt.c: the ESP-IDF task watchdog, reconfigured to timeout (ms)."""

    def __init__(self, id=0, timeout=5000):
        if id != 0:
            raise ValueError()
        if timeout <= 0:
            raise ValueError("WDT timeout too short")
        _sim.wdt_ms = timeout
        _sim.wdt_fed_us = _sim.now_us
        _sim.log("WDT armed %d ms" % timeout)

    def feed(self):
        _sim.call()
        _sim.wdt_fed_us = _sim.now_us


def disable_irq():
    _sim.call()
    if _sim.irq_off_us is None:
        _sim.irq_off_us = _sim.now_us
        return 1
    return 0


def enable_irq(state):
    _sim.call()
    if state:
        _sim.irq_off_us = None


def reset_cause():
    return _sim.state.get("reset_cause", PWRON_RESET)


def wake_reason():
    return _sim.state.get("wake_reason", chips.WAKE_UNDEFINED)


def wake_pins():
    return tuple(_sim.state.get("wake_pins") or ())


def unique_id():
    return bytes.fromhex(_sim.state.get("mac", "246f28000001"))


def freq(hz=None):
    if hz is None:
        return _sim.state.get("freq_mhz", max(_C["freqs_mhz"])) * 1000000
    if hz // 1000000 not in _C["freqs_mhz"]:
        raise ValueError("invalid frequency")
    _sim.state["freq_mhz"] = hz // 1000000
    return None


def idle():
    _sim.advance(1000)  # taskYIELD: at most one FreeRTOS tick


def _check_gpio_wake():
    """machine_sleep_helper(): deep sleep with wake_on_gpio pins."""
    if wake["gpio"] is None:
        return
    if not _C["gpio_deepsleep"]:
        raise ValueError("DEEPSLEEP with gpio pins not supported on this chip")
    for pin in wake["gpio"][0]:
        if pin not in _C["gpio_wake_pins"]:
            raise ValueError("wake-up pin not supported")  # esp_deep_sleep_enable_gpio_wakeup


def deepsleep(time_ms=None):
    _sim.check_alive()
    _check_gpio_wake()
    held = {}
    hold_all = _sim.out.get("deep_sleep_hold", False)
    for pid, pin in Pin._all.items():
        if pin.hold and (hold_all or pid in _C["hold_pins"]):
            held[str(pid)] = pin.level
    _sim.log("deepsleep %s" % time_ms)
    _sim.halt("deepsleep", timer_ms=time_ms, wake=wake, held=held)


def lightsleep(time_ms=None):
    _sim.set_radio("light_sleep")  # wake sources other than the timer: not simulated
    _sim.advance((time_ms or 0) * 1000)
    _sim.set_radio("off")


sleep = lightsleep


def reset():
    _sim.halt("reset")


def soft_reset():
    _sim.halt("soft_reset")


def bootloader(*args):
    _sim.halt("bootloader")


def time_pulse_us(pin, level, timeout_us=1000000):
    raise NotImplementedError("not simulated")


def bitstream(*args):
    raise NotImplementedError("not simulated")


def dht_readinto(*args):
    raise NotImplementedError("not simulated")


def _unsimulated(name):
    def make(*args, **kwargs):
        raise NotImplementedError("machine.%s is not simulated" % name)
    return type(name, (), {"__init__": make})


# Present on every chip of the port (extmod/modmachine.c with mpconfigport.h flags).
Timer = _unsimulated("Timer")
Signal = _unsimulated("Signal")
ADCBlock = _unsimulated("ADCBlock")
PWM = _unsimulated("PWM")
I2C = _unsimulated("I2C")
SoftI2C = _unsimulated("SoftI2C")
SPI = _unsimulated("SPI")
SoftSPI = _unsimulated("SoftSPI")
UART = _unsimulated("UART")
I2S = _unsimulated("I2S")  # SOC_I2S_SUPPORTED on all four
SDCard = _unsimulated("SDCard")
mem8 = mem16 = mem32 = None
if _C["touch"]:
    TouchPad = _unsimulated("TouchPad")  # SOC_TOUCH_SENSOR_SUPPORTED
if _C["dac"]:
    DAC = _unsimulated("DAC")  # SOC_DAC_SUPPORTED
if _sim.state.get("chip") != "esp32":
    I2CTarget = _unsimulated("I2CTarget")  # SOC_I2C_SUPPORT_SLAVE && !ESP32 (IDF >= 5.4)
