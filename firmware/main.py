"""ESP32 entry point: one wake = the wake routine (replenish/wake.py), then deep sleep.

Before anything else, otaboot picks the firmware slot; the bundle lives in /bundle.
Everything else is the ESP32 hardware layer (hw/esp32.py) wired into the portable wake
routine. A wake that crashes sleeps on a timer instead of idling in the REPL with the
radio on: a trial firmware then counts one more failed boot and is rolled back after
three (docs/fleet.md), a broken profile costs one short wake per retry, not a battery.
"""

import machine

import otaboot

BUNDLE = "/bundle"
OTA_ROOT = ""  # the flash root: slots in /ota/b<build>, record /ota/boot.json (docs/fleet.md)
_CRASH_SLEEP_MS = 600000
_WDT_MS = 60000

# Armed before the slot's modules are imported: a release that hangs there is reset.
wdt = machine.WDT(timeout=_WDT_MS)
otaboot.select(OTA_ROOT)
try:
    from hw import esp32
    from replenish.wake import Device

    hw = esp32.Esp32Hardware(BUNDLE, wdt)
    device = Device(hw, BUNDLE, OTA_ROOT)
    hw.sleep(device.wake(), device.board)
except Exception as err:  # noqa: BLE001  (anything: never stay awake in the REPL)
    import sys

    sys.print_exception(err)
    try:
        hw.sleep(_CRASH_SLEEP_MS // 1000, {})  # the button still wakes it, if it got that far
    except Exception:  # noqa: BLE001
        machine.deepsleep(_CRASH_SLEEP_MS)
