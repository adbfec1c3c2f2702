"""Unix-port entry point: micropython firmware/main_unix.py BUNDLE_DIR

Reads commands from stdin (press [slot] | boot | quit) and prints one line per
command: LED <pattern> seq=<n> result=<code|none> order=<id|none> state=<s|none>.
Commands: press [slot], boot, flush (send the offline queue), stats, setup PORT (Wi-Fi
setup mode on loopback: prints "SETUP port=N", then "SETUP <result>"), quit; on a
sensor board (board.json "sensor"): weight G (the simulated load), cycle [n] (appliance
cycles on the simulated pulse line), refill, tare, calibrate G, wake NOW_S (a timer
wake at second NOW_S: measure, report if the policy says so). Fleet (docs/fleet.md):
status [NOW_S] sends a heartbeat now, heartbeat NOW_S only when one is due; both print
"STATUS result=.. update=.. fw=.. wakes=..", then "OTA <outcome> release=.." when the
answer offered an update, and "REBOOT" (the process ends) once one is installed.
Environment: REPLENISH_ACK_TIMEOUT_MS (default 2000), REPLENISH_MAX_RETRANSMIT
(default 4), REPLENISH_BATTERY_MV, REPLENISH_RSSI_DBM.
"""

import os
import socket
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
from replenish import identity as identity_mod  # noqa: E402
from replenish.button import ERROR, RECORDED, Button  # noqa: E402
from replenish.client import Client  # noqa: E402
from replenish.counter import SeqCounter  # noqa: E402
from replenish.queue import Queue  # noqa: E402
from replenish.sender import Sender  # noqa: E402
from replenish import sensor as sensor_mod  # noqa: E402
from replenish.status import DEFAULT_INTERVAL_S, Status  # noqa: E402


def _env_int(name, default):
    value = os.getenv(name)
    if not value:
        return default
    return int(value)


def _none(value):
    return "none" if value is None else str(value)


def line_for(outcome, pattern=None):
    return "LED %s seq=%s result=%s order=%s state=%s" % (
        pattern or outcome.pattern, _none(outcome.seq), _none(outcome.result),
        _none(outcome.order), _none(outcome.state))


def make_sender(bundle, led, ack_timeout_ms, max_retransmit=4):
    ident = identity_mod.load(bundle)
    ident.fw = otaboot.running(bundle, ident.fw)[0]  # an installed update's version
    addr = socket.getaddrinfo(ident.coap_host, ident.coap_port)[0][-1]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client = Client(sock, addr, ack_timeout_ms=ack_timeout_ms, max_retransmit=max_retransmit)
    storage = unix.FileStorage(bundle + "/state")
    battery = unix.Battery(_env_int("REPLENISH_BATTERY_MV", None))
    sender = Sender(ident, SeqCounter(storage), client, Queue(storage), battery, led)
    return ident, sender, storage, client, battery


class Fleet:
    """Heartbeats and updates on the unix port (docs/fleet.md)."""

    def __init__(self, bundle, ident, sender, client, battery):
        board = ident.board or {}
        self.bundle = bundle
        self.ident = ident
        self.sender = sender
        self.client = client
        self.battery = battery
        self.status = Status(unix.Rtc(bundle + "/state/status.bin"),
                             board.get("status_interval_s", DEFAULT_INTERVAL_S))
        self.rssi = _env_int("REPLENISH_RSSI_DBM", None)  # the simulated Wi-Fi signal

    def heartbeat(self, now_s, may_update=True):
        """Send a heartbeat (carrying any update report); True when the device reboots."""
        report = otaboot.pending_report(self.bundle)
        outcome = self.status.send(self.sender, now_s, self.rssi, report)
        if outcome.authenticated and report is not None:
            otaboot.checked_in(self.bundle)
        unix.out("STATUS result=%s update=%s fw=%s wakes=%d" % (
            _none(outcome.result), _none(outcome.update), self.sender.fw, self.status.wakes))
        if outcome.reason:
            unix.out("# %s" % outcome.reason)
        if not outcome.authenticated or outcome.update is None or not may_update:
            return False
        return self.update(outcome.update, now_s)

    def update(self, release, now_s):
        from replenish import ota

        updater = ota.Updater(self.bundle, self.client, self.ident, self.battery,
                              log=lambda text: unix.out("# " + text))
        result, detail = updater.run(release)
        unix.out("OTA %s release=%d blocks=%d bytes=%d kept=%d heap_base=%s heap_peak=%d" % (
            result, release, updater.blocks, updater.bytes, updater.kept, updater.heap_base,
            updater.heap_peak))
        unix.out("# %s" % detail)
        if result == ota.INSTALLED:
            unix.out("REBOOT")
            return True
        if result == ota.REFUSED:
            self.heartbeat(now_s, may_update=False)  # report it at once; the offer stops
        return False


class UnixSensor:
    """Sensor role wiring for the unix port: simulated HX711 or pulse counter."""

    def __init__(self, bundle, board, sender, led, storage):
        from replenish.hx711 import HX711

        cfg = board["sensor"]
        self.kind = cfg.get("kind", "load_cell")
        self.cfg = cfg
        self.storage = storage
        policy = sensor_mod.Policy(cfg["capacity"], cfg.get("hysteresis", 0),
                                   cfg.get("heartbeat_s", 86400))
        state = sensor_mod.State(unix.Rtc(bundle + "/state/rtc.bin"))
        self.role = sensor_mod.Sensor(sender, led, policy, state)
        if self.kind == "load_cell":
            self.cell = unix.SimulatedLoadCell()
            hx = board.get("hx711", {})
            self.adc = HX711(self.cell.chip.dout_pin, self.cell.chip.sck_pin, self.cell.clock,
                             gain=hx.get("gain", 128))
            cal = storage.read("cal")
            if cal:
                offset, per_unit = cal.decode().split()
                self.adc.offset, self.adc.counts_per_unit = int(offset), float(per_unit)

    def command(self, verb, args):
        st = self.role.state
        if verb == "weight":
            self.cell.load = float(args[0])
        elif verb == "cycle":
            st.cycles += int(args[0]) if args else 1
            st.save()
        elif verb == "refill":
            st.cycles = 0
            st.save()
        elif verb == "tare":
            self.adc.tare()
        elif verb == "calibrate":
            self.adc.calibrate(float(args[0]))
        if verb in ("tare", "calibrate"):
            self.storage.write("cal", ("%d %r" % (self.adc.offset,
                                                  self.adc.counts_per_unit)).encode())
        if verb != "wake":
            unix.out("OK %s" % verb)
            return
        if self.kind == "load_cell":
            amount = self.adc.amount()
        else:
            amount = sensor_mod.cycles_remaining(self.cfg["capacity"], self.cfg.get("dose", 1),
                                                 st.cycles)
        reason, outcome = self.role.wake(amount, int(args[0]) if args else 0)
        if outcome is None:
            unix.out("LEVEL remaining=%d report=none" % self.role.policy.clamp(amount))
        else:
            unix.out("LEVEL remaining=%d report=%s" % (self.role.policy.clamp(amount), reason))
            unix.out(line_for(outcome))


def setup_mode(ident, storage, led, port):
    import json

    from replenish import setup

    if not ident.setup_secret:
        led.show("error")
        unix.out("SETUP refused: no setup secret in identity.json")
        return
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(socket.getaddrinfo("127.0.0.1", port)[0][-1])  # no getsockname here
    listener.listen(2)

    def save(ssid, password):
        storage.write("wifi.json", json.dumps({"ssid": ssid, "password": password}).encode())

    server = setup.SetupServer(listener, unix.Clock(), ident.setup_secret, save,
                               _env_int("REPLENISH_SETUP_TIMEOUT_MS", 300000),
                               log=lambda text: unix.out("# " + text))
    led.show("setup")
    unix.out("SETUP port=%d" % port)
    try:
        result, ssid = server.serve()
    finally:
        listener.close()
    unix.out("SETUP %s%s" % (result, "" if ssid is None else " ssid=" + ssid))
    if result == setup.SAVED:
        unix.out("# reboot into normal mode")


def run(bundle, stdin=None):
    led = unix.Led()
    ident, sender, storage, client, battery = make_sender(
        bundle, led, _env_int("REPLENISH_ACK_TIMEOUT_MS", 2000),
        _env_int("REPLENISH_MAX_RETRANSMIT", 4))
    fleet = Fleet(bundle, ident, sender, client, battery)
    fleet.status.wake()
    button = Button(sender, led)
    sensor = None
    if ident.board and "sensor" in ident.board:
        sensor = UnixSensor(bundle, ident.board, sender, led, storage)
    unix.out("# replenish %s device %s fw %s" % (ident.model, ident.device_hex, ident.fw))
    import replenish

    unix.out("# boot %d code %s" % (BOOT, replenish.__path__))
    if otaboot.pending_report(bundle) is not None and fleet.heartbeat(int(time.time())):
        return 0  # a trial firmware checks in at once; a report goes out at once
    for verb, args in unix.commands(stdin):
        if verb == "quit":
            break
        if verb in ("status", "heartbeat"):
            now_s = int(args[0]) if args else int(time.time())
            if verb == "heartbeat" and not fleet.status.due(now_s):
                unix.out("STATUS result=none update=none fw=%s wakes=%d" % (
                    sender.fw, fleet.status.wakes))
                continue
            if fleet.heartbeat(now_s):
                return 0  # installed: "reboot" (the test starts the process again)
            continue
        if verb == "press":
            try:
                slot = int(args[0]) if args else 0
            except ValueError:
                slot = -1
            if slot < 0:
                unix.out("# bad slot")
                unix.out("LED error seq=none result=none order=none state=none")
                continue
            fleet.status.wake()
            outcome = button.press(slot)
            pattern = None
        elif sensor is not None and verb in ("weight", "cycle", "refill", "tare", "calibrate",
                                             "wake"):
            sensor.command(verb, args)
            continue
        elif verb == "setup":
            setup_mode(ident, storage, led, int(args[0]) if args else 8080)
            continue
        elif verb == "flush":
            done, failure = sender.flush()
            for outcome in done:
                unix.out(line_for(outcome))
            unix.out("# flushed %d queued %d dropped %d" % (
                len(done), len(sender.queue), sender.queue.dropped))
            if failure is not None:
                unix.out("# %s" % failure.reason)
            unix.out("FLUSH delivered=%d queued=%d" % (len(done), len(sender.queue)))
            continue
        elif verb == "stats":
            unix.out("STATS queued=%d dropped=%d reported=%d flash_writes=%d" % (
                len(sender.queue), sender.queue.dropped, sender.queue.reported,
                storage.writes))
            continue
        elif verb == "boot":
            outcome = button.boot()
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
