"""Unix-port entry point: micropython firmware/main_unix.py BUNDLE_DIR

The device's wake routine (replenish/wake.py) on the unix hardware layer (hw/unix.py),
one stdin command at a time; this file only parses commands and prints results.
Commands: press [slot], boot, flush (send the offline queue), stats, setup PORT (Wi-Fi
setup mode on loopback: prints "SETUP port=N", then "SETUP <result>"), quit; on a
sensor board (board.json "sensor"): weight G (the simulated load), cycle [n] (appliance
cycles on the simulated pulse line), refill, tare, calibrate G, wake NOW_S (a timer
wake at second NOW_S: measure, report if the policy says so). Fleet (docs/fleet.md):
status [NOW_S] sends a heartbeat now, heartbeat NOW_S only when one is due; both print
"STATUS result=.. update=.. fw=.. wakes=..", then "OTA <outcome> release=.." when the
answer offered an update, and "REBOOT" (the process ends) once one is installed.
A press or boot prints: LED <pattern> seq=<n> result=<code|none> order=<id|none>
state=<s|none>. Environment: see hw/unix.UnixHardware; REPLENISH_SETUP_TIMEOUT_MS.
"""

import sys
import time


def _here():
    path = __file__ if "__file__" in globals() else sys.argv[0]
    i = path.rfind("/")
    return path[:i] if i > 0 else "."


sys.path.insert(0, _here())

import otaboot  # noqa: E402  (first: it decides where replenish/ and hw/ come from)

BOOT = otaboot.select(sys.argv[1]) if len(sys.argv) > 1 else otaboot.FACTORY

from hw import unix  # noqa: E402
from replenish.button import ERROR, RECORDED  # noqa: E402
from replenish.wake import SETUP_REFUSED, Device  # noqa: E402

_SENSOR_VERBS = ("weight", "cycle", "refill", "tare", "calibrate", "wake")


def _none(value):
    return "none" if value is None else str(value)


def line_for(outcome, pattern=None):
    return "LED %s seq=%s result=%s order=%s state=%s" % (
        pattern or outcome.pattern, _none(outcome.seq), _none(outcome.result),
        _none(outcome.order), _none(outcome.state))


def heartbeat(device, now_s, may_update=True):
    """Send a heartbeat and print it; True when an installed update reboots the device."""
    from replenish import ota

    outcome, update = device.heartbeat(now_s, may_update,
                                       log=lambda text: unix.out("# " + text))
    unix.out("STATUS result=%s update=%s fw=%s wakes=%d" % (
        _none(outcome.result), _none(outcome.update), device.sender.fw,
        device.status.wakes))
    if outcome.reason:
        unix.out("# %s" % outcome.reason)
    if update is None:
        return False
    result, detail, updater = update
    unix.out("OTA %s release=%d blocks=%d bytes=%d kept=%d heap_base=%s heap_peak=%d" % (
        result, outcome.update, updater.blocks, updater.bytes, updater.kept,
        updater.heap_base, updater.heap_peak))
    unix.out("# %s" % detail)
    if result == ota.INSTALLED:
        unix.out("REBOOT")
        return True
    if result == ota.REFUSED:
        heartbeat(device, now_s, may_update=False)  # report it at once; the offer stops
    return False


def sensor_command(device, verb, args):
    if verb == "weight":
        device.hw.simulated_cell().load = float(args[0])
    elif verb == "cycle":
        device.count(int(args[0]) if args else 1)
    elif verb == "refill":
        device.count(0)
    elif verb == "tare":
        device.tare()
    elif verb == "calibrate":
        device.calibrate(float(args[0]))
    if verb != "wake":
        unix.out("OK %s" % verb)
        return
    remaining, reason, outcome = device.measure(int(args[0]) if args else 0)
    unix.out("LEVEL remaining=%d report=%s" % (remaining, _none(reason)))
    if outcome is not None:
        unix.out(line_for(outcome))


def setup(device, port):
    result, ssid = device.setup(port)
    if result == SETUP_REFUSED:
        unix.out("SETUP refused: no setup secret in identity.json")
        return
    unix.out("SETUP %s%s" % (result, "" if ssid is None else " ssid=" + ssid))
    if result == "saved":
        unix.out("# reboot into normal mode")


def flush(device):
    done, failure = device.flush()
    queue = device.queue
    for outcome in done:
        unix.out(line_for(outcome))
    unix.out("# flushed %d queued %d dropped %d" % (len(done), len(queue), queue.dropped))
    if failure is not None:
        unix.out("# %s" % failure.reason)
    unix.out("FLUSH delivered=%d queued=%d" % (len(done), len(queue)))


def run(bundle, stdin=None):
    hw = unix.UnixHardware(bundle)
    device = Device(hw, bundle, bundle, log=lambda text: unix.out("# " + text),
                    setup_timeout_ms=unix.env_int("REPLENISH_SETUP_TIMEOUT_MS", 300000))
    device.status.wake()
    sensor = device.sensor is not None
    ident = device.ident
    unix.out("# replenish %s device %s fw %s" % (ident.model, ident.device_hex, ident.fw))
    import replenish

    unix.out("# boot %d code %s" % (BOOT, replenish.__path__))
    if otaboot.pending_report(bundle) is not None and heartbeat(device, int(time.time())):
        return 0  # a trial firmware checks in at once; a report goes out at once
    for verb, args in unix.commands(stdin):
        if verb == "quit":
            break
        if verb in ("status", "heartbeat"):
            now_s = int(args[0]) if args else int(time.time())
            if verb == "heartbeat" and not device.status.due(now_s):
                unix.out("STATUS result=none update=none fw=%s wakes=%d" % (
                    device.sender.fw, device.status.wakes))
                continue
            if heartbeat(device, now_s):
                return 0  # installed: "reboot" (the test starts the process again)
            continue
        pattern = None
        if verb == "press":
            try:
                slot = int(args[0]) if args else 0
            except ValueError:
                slot = -1
            if slot < 0:
                unix.out("# bad slot")
                unix.out("LED error seq=none result=none order=none state=none")
                continue
            outcome = device.press(slot)
        elif sensor and verb in _SENSOR_VERBS:
            sensor_command(device, verb, args)
            continue
        elif verb == "setup":
            setup(device, int(args[0]) if args else 8080)
            continue
        elif verb == "flush":
            flush(device)
            continue
        elif verb == "stats":
            queue = device.queue
            unix.out("STATS queued=%d dropped=%d reported=%d flash_writes=%d" % (
                len(queue), queue.dropped, queue.reported, hw.storage.writes))
            continue
        elif verb == "boot":
            outcome = device.boot()
            pattern = ERROR if outcome.pattern == ERROR else RECORDED
        else:
            unix.out("# unknown command %s" % verb)
            unix.out("LED error seq=none result=none order=none state=none")
            continue
        if outcome.reason:
            unix.out("# %s" % outcome.reason)
        unix.out(line_for(outcome, pattern))
    return 0


def main(argv):
    if len(argv) < 2:
        unix.out("# usage: micropython main_unix.py BUNDLE_DIR")
        return 2
    return run(argv[1])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
