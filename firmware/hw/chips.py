"""What each ESP32 family member can do, in one table: the board validator
(hardware/validate.py) and the ESP32 hardware layer (hw/esp32.py) both read it, so a
board profile that validates is one the firmware can run.

Plain Python (no `micropython` import): CPython loads this file too. Sources, per fact:
- [mp-h]  MicroPython 1.29 ports/esp32/modesp32.h, RTC_VALID_EXT_PINS per target: the
          pins esp32.wake_on_ext0/ext1 and Pin.irq(wake=) accept ("invalid pin").
- [mp-c]  ports/esp32/modesp32.c module table: wake_on_ext0 only under
          SOC_PM_SUPPORT_EXT0_WAKEUP, wake_on_ext1 under SOC_PM_SUPPORT_EXT1_WAKEUP,
          wake_on_gpio always, gpio_deep_sleep_hold only under
          SOC_GPIO_SUPPORT_HOLD_IO_IN_DSLP && !SOC_GPIO_SUPPORT_HOLD_SINGLE_IO_IN_DSLP,
          which ESP-IDF defines only in some releases (v5.4-v5.5.1; not in v5.5.2, the
          one MicroPython 1.29 builds with): the firmware never relies on it.
- [idf-h] ESP-IDF gpio.c / GPIO docs: Pin(hold=True) (gpio_hold_en) keeps a level
          through deep sleep on its own for RTC IOs (rtc_gpio_hold_en: ESP32, S3), the
          VDD3P3_RTC pads of the C3 (GPIO0-5), and single pads on the C6
          (SOC_GPIO_SUPPORT_HOLD_SINGLE_IO_IN_DSLP).
- [mp-m]  ports/esp32/modmachine.c: machine.wake_reason() returns
          esp_sleep_get_wakeup_cause() as is; EXT0_WAKE=2, EXT1_WAKE=3, TIMER_WAKE=4 are
          defined on every chip, a GPIO wake (7) has no constant; deep sleep with
          wake_on_gpio pins calls esp_deep_sleep_enable_gpio_wakeup ("wake-up pin not
          supported" for others).
- [mp-p]  ports/esp32/mpconfigport.h: MICROPY_HW_RTC_USER_MEM_MAX 2048 (RTC.memory()).
- [idf-s] ESP-IDF esp_sleep.h, esp_sleep_source_t: UNDEFINED 0, ALL 1, EXT0 2, EXT1 3,
          TIMER 4, TOUCHPAD 5, ULP 6, GPIO 7.
- [idf-c] ESP-IDF components/soc/<target>/include/soc/soc_caps.h: SOC_PM_SUPPORT_EXT0/1,
          SOC_GPIO_DEEP_SLEEP_WAKE_VALID_GPIO_MASK (C3: GPIO0-5, C6: GPIO0-7),
          SOC_ADC_PERIPH_NUM and channel counts (C6: one ADC unit, 7 channels).
- [ds]    Espressif datasheets (ESP32 v4.x, ESP32-S3 v1.x, ESP32-C3 v1.x, ESP32-C6 v1.x):
          GPIO count, strapping pins, SPI flash pins, ADC channel to GPIO, UART0/USB.
"""

WAKE_EXT0 = "ext0"  # esp32.wake_on_ext0(pin, level): one RTC pin
WAKE_EXT1 = "ext1"  # esp32.wake_on_ext1(pins, level)
WAKE_GPIO = "gpio"  # esp32.wake_on_gpio(pins, level): deep-sleep GPIO wake (C3, C6)

# machine.wake_reason() values [idf-s], [mp-m]
REASON_EXT0 = 2
REASON_EXT1 = 3
REASON_TIMER = 4
REASON_TOUCHPAD = 5
REASON_ULP = 6
REASON_GPIO = 7

RTC_USER_MEM_BYTES = 2048  # [mp-p], every esp32 target


def _r(a, b):
    return tuple(range(a, b + 1))


class Chip:
    __slots__ = ("name", "gpios", "flash", "strapping", "input_only", "wake_pins",
                 "button_wake", "pulse_wake", "adc1", "adc2", "console", "hold_pins")

    def __init__(self, name, gpios, flash, strapping, input_only, wake_pins, button_wake,
                 pulse_wake, adc1, adc2, console, hold_pins):
        self.name = name
        self.gpios = gpios
        self.flash = flash  # wired to the module's SPI flash: never usable
        self.strapping = strapping  # sampled at reset: the level picks the boot mode
        self.input_only = input_only  # no output driver, no internal pulls
        self.wake_pins = wake_pins  # may wake the chip from deep sleep
        self.button_wake = button_wake  # how the firmware arms the button (WAKE_*)
        self.pulse_wake = pulse_wake  # how it arms an appliance pulse line
        self.adc1 = adc1
        self.adc2 = adc2  # shares the radio: unusable while Wi-Fi is on
        self.console = console  # UART0 / USB serial: REPL and flashing
        # Pin(hold=True) alone keeps these pins' levels through deep sleep [idf-h]
        # (an HX711's SCK must be one: powered, it draws ~1.5 mA while the board sleeps)
        self.hold_pins = hold_pins

    def wake_reason(self, reason, button_pin, wake_pins=()):
        """'button', 'pulse', 'timer' or None (not a wake this firmware arms) for a
        machine.wake_reason() value after a deep-sleep reset."""
        if reason == REASON_TIMER:
            return "timer"
        if reason == REASON_EXT0:
            return "button"  # ext0 holds only the button
        if reason == REASON_EXT1:
            return "button" if self.button_wake == WAKE_EXT1 else "pulse"
        if reason == REASON_GPIO:  # button and pulse share wake_on_gpio: ask which pin
            if not wake_pins or button_pin in wake_pins:
                return "button"
            return "pulse"
        return None


CHIPS = {
    # ESP32 (WROOM-32E) [ds]; wake pins [mp-h] (the RTC GPIOs); ext0 + ext1 [idf-c]
    "esp32": Chip(
        "esp32",
        gpios=_r(0, 19) + (21, 22, 23, 25, 26, 27) + _r(32, 39),
        flash=_r(6, 11),
        strapping=(0, 2, 5, 12, 15),
        input_only=_r(34, 39),
        wake_pins=(0, 2, 4, 12, 13, 14, 15, 25, 26, 27) + _r(32, 39),
        button_wake=WAKE_EXT0, pulse_wake=WAKE_EXT1,
        adc1=_r(32, 39),
        adc2=(0, 2, 4, 12, 13, 14, 15, 25, 26, 27),
        console=(1, 3),
        hold_pins=(0, 2, 4, 12, 13, 14, 15, 25, 26, 27) + _r(32, 39),  # RTC IOs
    ),
    # ESP32-C3 [ds]: no RTC IO subsystem, no ext0/ext1 [idf-c]; deep-sleep GPIO wake on
    # the VDD3P3_RTC pads GPIO0-5 (SOC_GPIO_DEEP_SLEEP_WAKE_VALID_GPIO_MASK) [idf-c].
    # modesp32.h's RTC_VALID_EXT_PINS falls back to the ESP32 list here, but nothing
    # that checks it exists on the C3.
    "esp32c3": Chip(
        "esp32c3",
        gpios=_r(0, 21),
        flash=_r(12, 17),
        strapping=(2, 8, 9),
        input_only=(),
        wake_pins=_r(0, 5),
        button_wake=WAKE_GPIO, pulse_wake=WAKE_GPIO,
        adc1=_r(0, 4),
        adc2=(5,),
        console=(18, 19, 20, 21),
        hold_pins=_r(0, 5),
    ),
    # ESP32-S3 (WROOM-1) [ds]: RTC GPIO0-21 [mp-h]; ext0 + ext1 [idf-c]; GPIO26-32 on
    # the SPI flash (33-37 too on octal-PSRAM modules: kept out of boards) [ds].
    "esp32s3": Chip(
        "esp32s3",
        gpios=_r(0, 21) + _r(26, 48),
        flash=_r(26, 32),
        strapping=(0, 3, 45, 46),
        input_only=(),
        wake_pins=_r(0, 21),
        button_wake=WAKE_EXT0, pulse_wake=WAKE_EXT1,
        adc1=_r(1, 10),
        adc2=_r(11, 20),
        console=(19, 20, 43, 44),
        hold_pins=_r(0, 21),  # RTC IOs
    ),
    # ESP32-C6 (WROOM-1) [ds]: LP GPIO0-7 wake [mp-h] [idf-c]; ext1 but no ext0 [idf-c];
    # one ADC unit, GPIO0-6 [idf-c]; single-pad hold in deep sleep (not the USB pads
    # 12, 13) [idf-h]. Strapping: MTMS/MTDI (4, 5), 8, 9, 15 [ds].
    "esp32c6": Chip(
        "esp32c6",
        gpios=_r(0, 30),
        flash=_r(24, 30),
        strapping=(4, 5, 8, 9, 15),
        input_only=(),
        wake_pins=_r(0, 7),
        button_wake=WAKE_GPIO, pulse_wake=WAKE_GPIO,
        adc1=_r(0, 6),
        adc2=(),
        console=(12, 13, 16, 17),
        hold_pins=_r(0, 11) + _r(14, 23),
    ),
}


def get(name):
    chip = CHIPS.get(name)
    if chip is None:
        raise ValueError("unknown mcu %r (known: %s)" % (name, ", ".join(sorted(CHIPS))))
    return chip
