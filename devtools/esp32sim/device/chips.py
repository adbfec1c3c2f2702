"""What MicroPython 1.29's esp32 port exposes per chip family, as data.

Read from micropython/micropython ports/esp32 at v1.29.0-preview-731 (1c3c2011) and
ESP-IDF v5.x soc_caps.h / gpio_caps.h; each entry names its file and guard. Loaded by
the simulated `machine`/`esp32`/`network` modules (MicroPython) and by the harness
(CPython), so it uses dicts, tuples and ints only.

Sources (abbreviated below):
  MP  = micropython ports/esp32/<file>
  IDF = esp-idf components/soc/<chip>/include/soc/soc_caps.h (gpio_caps.h on older IDF)
"""

# esp_sleep_source_t (IDF components/esp_hw_support/include/esp_sleep.h, v5.x):
# what machine.wake_reason() returns (MP modmachine.c: esp_sleep_get_wakeup_cause()).
WAKE_UNDEFINED = 0  # not a deep-sleep wake (power-on, reset, watchdog)
WAKE_EXT0 = 2
WAKE_EXT1 = 3
WAKE_TIMER = 4
WAKE_TOUCHPAD = 5
WAKE_ULP = 6
WAKE_GPIO = 7  # no machine constant names it (MP modmachine.c EXTRA_GLOBALS)

# machine.reset_cause() (MP modmachine.c reset_reason_t, mp_machine_reset_cause)
PWRON_RESET = 1  # ESP_RST_POWERON, ESP_RST_BROWNOUT
HARD_RESET = 2  # ESP_RST_SW (machine.reset), ESP_RST_PANIC, ESP_RST_EXT
WDT_RESET = 3  # ESP_RST_TASK_WDT, ESP_RST_INT_WDT, ESP_RST_WDT
DEEPSLEEP_RESET = 4  # ESP_RST_DEEPSLEEP
SOFT_RESET = 5

# The ESP-IDF release the port is built with: MicroPython 1.29's CI and README use
# v5.5.2 (.github/workflows/ports_esp32.yml IDF_NEWEST_VER). One fact depends on it:
# esp32.gpio_deep_sleep_hold is compiled under SOC_GPIO_SUPPORT_HOLD_IO_IN_DSLP &&
# !SOC_GPIO_SUPPORT_HOLD_SINGLE_IO_IN_DSLP (modesp32.c), and soc_caps.h defines
# SOC_GPIO_SUPPORT_HOLD_IO_IN_DSLP on ESP32/C3/S3/C6 only in v5.4 .. v5.5.1 (checked
# with git show v5.3 .. v5.5.4 in espressif/esp-idf): on a v5.5.2 build no chip has it.
IDF_DEFAULT = (5, 5, 2)
HOLD_IO_IN_DSLP_IDF = ((5, 4, 0), (5, 5, 1))


def has_deep_sleep_hold(chip_cfg, idf=IDF_DEFAULT):
    low, high = HOLD_IO_IN_DSLP_IDF
    return chip_cfg["deep_sleep_hold_fn"] and low <= tuple(idf) <= high


RTC_USER_MEM_MAX = 2048  # MP mpconfigport.h MICROPY_HW_RTC_USER_MEM_MAX (all chips)
INT_WDT_MS = 300  # IDF Kconfig ESP_INT_WDT_TIMEOUT_MS default (MP sdkconfig.base keeps it)

CHIPS = {
    "esp32": {
        # MP machine_pin.h CONFIG_IDF_TARGET_ESP32 (16/17 absent only with SPIRAM)
        "pins": tuple(range(0, 24)) + (25, 26, 27) + tuple(range(32, 40)),
        # MP machine_pin.c GPIO_FIRST_NON_OUTPUT 34 (CONFIG_IDF_TARGET_ESP32)
        "input_only": (34, 35, 36, 37, 38, 39),
        # ESP32 datasheet, "Pin Description": GPIO6-11 run the module's SPI flash; the
        # port lets Python reconfigure them and the next flash access crashes the chip
        "flash_pins": (6, 7, 8, 9, 10, 11),
        # MP machine_adc.c madc_obj[] CONFIG_IDF_TARGET_ESP32: (unit, channel) per GPIO
        "adc": {36: (1, 0), 37: (1, 1), 38: (1, 2), 39: (1, 3), 32: (1, 4), 33: (1, 5),
                34: (1, 6), 35: (1, 7), 4: (2, 0), 0: (2, 1), 2: (2, 2), 15: (2, 3),
                13: (2, 4), 12: (2, 5), 14: (2, 6), 27: (2, 7), 25: (2, 8), 26: (2, 9)},
        # IDF adc_oneshot: ADC2 is shared with the Wi-Fi PHY on ESP32; a read while
        # Wi-Fi runs fails with ESP_ERR_TIMEOUT (IDF docs, "ADC2 ... Wi-Fi")
        "adc2_blocked_by_wifi": True,
        # MP modesp32.h RTC_VALID_EXT_PINS (#else branch: ESP32)
        "rtc_pins": (0, 2, 4, 12, 13, 14, 15, 25, 26, 27, 32, 33, 34, 35, 36, 37, 38, 39),
        # IDF: no SOC_GPIO_SUPPORT_DEEPSLEEP_WAKEUP on ESP32
        "gpio_wake_pins": (),
        # ESP32 datasheet, "Strapping Pins": MTDI(12), GPIO0, GPIO2, MTDO(15), GPIO5
        "strapping": (0, 2, 5, 12, 15),
        "ext0": True,  # IDF SOC_PM_SUPPORT_EXT0_WAKEUP (MP modesp32.c guard)
        "ext1": True,  # IDF SOC_PM_SUPPORT_EXT1_WAKEUP
        "gpio_deepsleep": False,  # IDF SOC_GPIO_SUPPORT_DEEPSLEEP_WAKEUP
        "touch": True,  # IDF SOC_TOUCH_SENSOR_SUPPORTED
        "ulp": True,  # IDF SOC_ULP_SUPPORTED
        "ulp_class": True,  # MP modesp32.c CONFIG_IDF_TARGET_ESP32||S2||S3
        # no SOC_GPIO_SUPPORT_HOLD_SINGLE_IO_IN_DSLP: gpio_deep_sleep_hold where the IDF
        # defines SOC_GPIO_SUPPORT_HOLD_IO_IN_DSLP (has_deep_sleep_hold above)
        "deep_sleep_hold_fn": True,
        # Pins whose Pin(hold=True) lasts through deep sleep without the global
        # gpio_deep_sleep_hold(True): RTC IOs (gpio_hold_en -> rtc_gpio_hold_en, IDF gpio.c)
        "hold_pins": (0, 2, 4, 12, 13, 14, 15, 25, 26, 27, 32, 33, 34, 35, 36, 37, 38, 39),
        "pcnt": True,  # IDF SOC_PCNT_SUPPORTED (MP mpconfigport.h MICROPY_PY_ESP32_PCNT)
        "dac": True,  # IDF SOC_DAC_SUPPORTED (MP mpconfigport.h MICROPY_PY_MACHINE_DAC)
        "raw_temperature": True,  # MP modesp32.c CONFIG_IDF_TARGET_ESP32, else mcu_temperature
        "freqs_mhz": (20, 40, 80, 160, 240),  # MP modmachine.c mp_machine_set_freq
        # Boot from a deep-sleep wake to main.py: estimate (issue 15: 200-300 ms; MP
        # sdkconfig.base BOOTLOADER_SKIP_VALIDATE_IN_DEEP_SLEEP=y); power-on adds the
        # image validation that the deep-sleep path skips (estimate).
        "boot_ms": 250, "power_on_extra_ms": 150,
    },
    "esp32c3": {
        # MP machine_pin.h CONFIG_IDF_TARGET_ESP32C3; 18/19 only without USB-serial-JTAG,
        # which ESP32_GENERIC_C3 uses (MP mpconfigport.h MICROPY_HW_ESP_USB_SERIAL_JTAG)
        "pins": tuple(range(0, 14)) + (20, 21),
        "input_only": (),
        # MP machine_adc.c CONFIG_IDF_TARGET_ESP32C3: ADC1 = GPIO0-4, ADC2 = GPIO5
        "adc": {0: (1, 0), 1: (1, 1), 2: (1, 2), 3: (1, 3), 4: (1, 4), 5: (2, 0)},
        "adc2_blocked_by_wifi": True,  # C3 ADC2 is unreliable (errata); IDF refuses it
        # MP modesp32.h: the #else (classic ESP32) list also applies to the C3; used only
        # by Pin.irq(wake=...) since the C3 has neither ext0 nor ext1
        "rtc_pins": (0, 2, 4, 12, 13, 14, 15, 25, 26, 27, 32, 33, 34, 35, 36, 37, 38, 39),
        # IDF esp32c3 gpio_caps.h SOC_GPIO_DEEP_SLEEP_WAKEUP_VALID_GPIO_MASK = GPIO0-5
        "gpio_wake_pins": (0, 1, 2, 3, 4, 5),
        # ESP32-C3 datasheet, "Strapping Pins": GPIO2, GPIO8, GPIO9
        "strapping": (2, 8, 9),
        "ext0": False, "ext1": False,  # IDF esp32c3: no SOC_PM_SUPPORT_EXT0/EXT1_WAKEUP
        "gpio_deepsleep": True,  # IDF SOC_GPIO_SUPPORT_DEEPSLEEP_WAKEUP (1)
        "touch": False, "ulp": False, "ulp_class": False,
        "deep_sleep_hold_fn": True,  # IDF esp32c3: no SINGLE_IO (see has_deep_sleep_hold)
        # Pins in the VDD3P3_RTC domain keep a hold without the global enable (IDF gpio docs)
        "hold_pins": (0, 1, 2, 3, 4, 5),
        "pcnt": False, "dac": False, "raw_temperature": False,
        "freqs_mhz": (20, 40, 80, 160),
        "boot_ms": 200, "power_on_extra_ms": 120,
    },
    "esp32s3": {
        # MP machine_pin.h CONFIG_IDF_TARGET_ESP32S3: 19/20 are the native USB (console,
        # CONFIG_USB_CDC_ENABLED on ESP32_GENERIC_S3); 26 without SPIRAM; 33-37 unless
        # octal SPIRAM; 47/48 only with MICROPY_HW_ESP32S3_EXTENDED_IO
        "pins": tuple(range(0, 19)) + (21, 26) + tuple(range(33, 47)),
        "input_only": (),
        # MP machine_adc.c CONFIG_IDF_TARGET_ESP32S2||S3: ADC1 GPIO1-10, ADC2 GPIO11-20
        "adc": dict([(g, (1, g - 1)) for g in range(1, 11)]
                    + [(g, (2, g - 11)) for g in range(11, 21)]),
        "adc2_blocked_by_wifi": False,  # S3: ADC2 arbitrated with Wi-Fi (IDF adc docs)
        # MP modesp32.h RTC_VALID_EXT_PINS CONFIG_IDF_TARGET_ESP32S2||S3: GPIO0-21
        "rtc_pins": tuple(range(0, 22)),
        "gpio_wake_pins": (),  # IDF esp32s3: no SOC_GPIO_SUPPORT_DEEPSLEEP_WAKEUP
        # ESP32-S3 datasheet, "Strapping Pins": GPIO0, GPIO3, GPIO45, GPIO46
        "strapping": (0, 3, 45, 46),
        "ext0": True, "ext1": True, "gpio_deepsleep": False,
        "touch": True, "ulp": True, "ulp_class": True,
        "deep_sleep_hold_fn": True,
        "hold_pins": tuple(range(0, 22)),  # RTC IOs, as on the ESP32
        "pcnt": True, "dac": False, "raw_temperature": False,
        "freqs_mhz": (20, 40, 80, 160, 240),
        "boot_ms": 250, "power_on_extra_ms": 150,
    },
    "esp32c6": {
        # MP machine_pin.h CONFIG_IDF_TARGET_ESP32C6: 12/13 are USB-serial-JTAG; 24-30 flash
        "pins": tuple(range(0, 12)) + tuple(range(14, 24)),
        "input_only": (),
        # MP machine_adc.c CONFIG_IDF_TARGET_ESP32C6: ADC1 GPIO0-6 (one ADC unit)
        "adc": {0: (1, 0), 1: (1, 1), 2: (1, 2), 3: (1, 3), 4: (1, 4), 5: (1, 5), 6: (1, 6)},
        "adc2_blocked_by_wifi": False,
        # MP modesp32.h RTC_VALID_EXT_PINS CONFIG_IDF_TARGET_ESP32C6: LP GPIO0-7
        "rtc_pins": (0, 1, 2, 3, 4, 5, 6, 7),
        # IDF esp32c6 soc_caps.h SOC_GPIO_DEEP_SLEEP_WAKE_VALID_GPIO_MASK = GPIO0-7
        "gpio_wake_pins": (0, 1, 2, 3, 4, 5, 6, 7),
        # ESP32-C6 datasheet, "Strapping Pins": MTMS(4), MTDI(5), GPIO8, GPIO9, GPIO15
        "strapping": (4, 5, 8, 9, 15),
        "ext0": False,  # IDF esp32c6: no SOC_PM_SUPPORT_EXT0_WAKEUP
        "ext1": True,  # IDF esp32c6 SOC_PM_SUPPORT_EXT1_WAKEUP (1)
        "gpio_deepsleep": True,  # IDF esp32c6 SOC_GPIO_SUPPORT_DEEPSLEEP_WAKEUP (1)
        "touch": False,
        "ulp": True,  # IDF esp32c6 SOC_ULP_SUPPORTED (LP core): esp32.wake_on_ulp exists
        "ulp_class": False,  # MP modesp32.c: esp32.ULP only on ESP32/S2/S3
        # IDF esp32c6 SOC_GPIO_SUPPORT_HOLD_SINGLE_IO_IN_DSLP: Pin(hold=True) alone holds
        # a pin through deep sleep and esp32.gpio_deep_sleep_hold does not exist
        "deep_sleep_hold_fn": False,
        "hold_pins": tuple(range(0, 12)) + tuple(range(14, 24)),
        "pcnt": True, "dac": False, "raw_temperature": False,
        "freqs_mhz": (20, 40, 80, 160),
        "boot_ms": 200, "power_on_extra_ms": 120,
    },
}


def chip(name):
    try:
        return CHIPS[name]
    except KeyError:
        raise ValueError("unknown chip %r" % name)
